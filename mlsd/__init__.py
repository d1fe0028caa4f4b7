"""The `mlsd` command: the composition root above infra/, systems/ and fundamentals/."""
