"""One web process's worth of rate-limited requests, for the test of the shared buckets
across processes (test_ratelimit_shared.py): run as ``python -m tests.security.shared_limit_process
<ip> <api key> <redirects> <api calls>`` with ``REDIS_URL`` and the ``RATE_LIMIT_*`` settings in
the environment. It sets Django up, prints ``ready``, waits for a line on stdin (so that the
processes start together), then sends the redirect's requests through ``hit_wsgi`` (as the
WSGI fast path does) and the API's through ``RateLimitMiddleware``, and prints what it was
answered as one JSON line. The redirects are spread among the API calls, and the calls
paced, so that the two processes send at the same time."""

from __future__ import annotations

import json
import sys
import time

# Seconds between two requests of a process.
PACE = 0.0005


def main(ip: str, key: str, redirects: int, api_calls: int) -> dict:
    import django

    django.setup()
    from django.http import HttpResponse
    from django.test import RequestFactory

    from affiliate import ratelimit

    middleware = ratelimit.RateLimitMiddleware(lambda request: HttpResponse("ok"))
    factory = RequestFactory()
    print("ready", flush=True)
    sys.stdin.readline()

    redirect = {"admitted": 0, "refused": 0, "waits": set(), "unmarked": 0}
    api = {"admitted": 0, "refused": 0, "waits": set(), "bodies": set()}
    sent = 0
    for n in range(api_calls):  # the redirects spread among the API calls, paced: both processes at once
        if sent < redirects and n * redirects // api_calls >= sent:
            sent += 1
            environ = {"PATH_INFO": "/r/shared", "REMOTE_ADDR": ip}
            wait = ratelimit.hit_wsgi(environ, [("redirect", ip)])
            redirect["unmarked"] += ratelimit.COUNTED not in environ
            if wait:
                redirect["refused"] += 1
                redirect["waits"].add(ratelimit.retry_after(wait))
            else:
                redirect["admitted"] += 1
        response = middleware(factory.get("/api/v1/merchant/", HTTP_AUTHORIZATION=f"Bearer {key}", REMOTE_ADDR=ip))
        if response.status_code == 429:
            api["refused"] += 1
            api["waits"].add(int(response["Retry-After"]))
            api["bodies"].add(json.loads(response.content)["error"]["code"])
        else:
            api["admitted"] += 1
        time.sleep(PACE)
    for counts in (redirect, api):
        for name in ("waits", "bodies"):
            if name in counts:
                counts[name] = sorted(counts[name])
    return {"redirect": redirect, "api": api, "round_trips": ratelimit.round_trips(), "requests": redirects + api_calls}


if __name__ == "__main__":
    ip, key, redirects, api_calls = sys.argv[1:5]
    print(json.dumps(main(ip, key, int(redirects), int(api_calls))), flush=True)
