"""The recsys Feast repo: definitions (entities, views, services) and the batch jobs that fill them."""
