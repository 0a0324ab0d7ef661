"""moto's server app (as `python3 -m moto.server` runs it) on 127.0.0.1:PORT, one request at a time.

AWS applies each call atomically (a DynamoDB conditional update checks and writes as one step); moto's
backends do not lock, so two requests at once could both pass one condition. Serialised, moto keeps AWS's
promise. Used by the tests (ec_testkit::MotoServer) and the local cluster (the replicas' filter table).

    python3 scripts/moto-server.py PORT
"""
import sys
import threading

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()


def serialized(environ, start_response):
    with lock:
        return list(app(environ, start_response))


run_simple("127.0.0.1", int(sys.argv[1]), serialized, threaded=True)
