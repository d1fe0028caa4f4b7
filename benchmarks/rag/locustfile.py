"""Load for `mlsd rag bench`: /ask (extractive) and /search at the same fixed rate, beside the empty floor route.

With `--data beir:<folder>` the bench writes the dataset's queries to MLSD_RAG_QUESTIONS_FILE and locust asks
those instead of the help-center questions below.
"""

import json
import random

from locust import FastHttpUser, constant_throughput, task

from infra.bench.users import BENCH, FloorUser
from systems.rag_search.config import SETTINGS

# The harness's rate is the /ask rate (what the SLO judges); /search gets the same rate from its own users
# unless MLSD_RAG_SEARCH_RATE says otherwise.
RATE = BENCH.rate
SEARCH_RATE = SETTINGS().search_rate or RATE

__all__ = ["FloorUser", "AskUser", "SearchUser"]

QUESTIONS = [
    "how do I reset my password on iOS",
    "what does error E117 mean",
    "how much is the Plus plan",
    "can i get my money back",
    "how do i connect Slack",
    "work offline",
    "is there a student discount",
    "E124 won't go away on my mobile, what do I do",
    "what is your trash policy",
    "export to docx",
    "set up 2FA on Android",
    "is there a free trial",
    "Is there a Lumen Notes app for the Apple Watch?",
    "how many people can join a Team workspace",
    "my payment failed",
    "system requirements for Linux",
]
if SETTINGS().questions_file is not None:
    QUESTIONS = json.loads(SETTINGS().questions_file.read_text())


class AskUser(FastHttpUser):
    fixed_count = 2
    wait_time = constant_throughput(RATE / 2)

    @task
    def ask(self) -> None:
        self.client.post("/ask", json={"question": random.choice(QUESTIONS)}, name="ask")


class SearchUser(FastHttpUser):
    fixed_count = 2
    wait_time = constant_throughput(SEARCH_RATE / 2)

    @task
    def search(self) -> None:
        self.client.post("/search", json={"question": random.choice(QUESTIONS), "k": 10}, name="search")
