"""The peer of `cargo xtask bench http`: what users would otherwise build. FastAPI under
uvicorn whose endpoints submit the same job shape as Tessera's `hello_world` n=3 to Celery on
Redis (a chord of n `greet` tasks and a `summarize` callback, through `apply_async`), and read
a job's state (`AsyncResult`). Run by the bench as

    PEER_REDIS=redis://... uvicorn --app-dir xtask/peers http_peer:app --workers 2
    PEER_REDIS=redis://... celery -A http_peer worker --pool=prefork --concurrency=2
"""

import os

from celery import Celery, chord
from fastapi import FastAPI
from pydantic import BaseModel

BROKER = os.environ.get("PEER_REDIS", "redis://127.0.0.1:6379/0")
celery = Celery("http_peer", broker=BROKER, backend=BROKER)


@celery.task
def greet(index, message):
    return {"greeting": f"{message} #{index}"}


@celery.task
def summarize(greetings):
    return {"greetings": len(greetings)}


app = FastAPI()


class Submit(BaseModel):
    job_type: str
    params: dict = {}


@app.post("/api/jobs", status_code=202)
def submit(body: Submit):
    n = int(body.params.get("n", 3))
    message = str(body.params.get("message", "hello"))
    result = chord(greet.s(i, message) for i in range(n))(summarize.s())
    return {"id": result.id, "status": "PENDING"}


@app.get("/api/jobs/{job_id}")
def status(job_id: str):
    return {"id": job_id, "status": celery.AsyncResult(job_id).state}
