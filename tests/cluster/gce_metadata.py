"""A simulated GCE metadata server: a thread in the test process that GCE_METADATA_IP points
at. Like the real one (and as TensorFlow's and our detection expect) it answers only
requests that carry `Metadata-Flavor: Google`, with that header, under
/computeMetadata/v1/; TF's `failure_handling_util` asks for `instance/hostname` (is this
GCE?) and `instance/maintenance-event`, our watcher also for `instance/preempted`."""
import collections
import http.server
import threading

PREFIX = "/computeMetadata/v1/"


class MetadataServer:
    def __init__(self, flavor_header=True):
        self.values = {"instance/hostname": "vm-0.c.project.internal",
                       "instance/maintenance-event": "NONE",
                       "instance/preempted": "FALSE"}
        self.requests = collections.Counter()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                path = self.path.split("?")[0][len(PREFIX):]
                server.requests[path] += 1
                value = server.values.get(path) if self.path.startswith(PREFIX) else None
                if self.headers.get("Metadata-Flavor") != "Google":
                    value = None
                    self.send_response(403)
                elif value is None:
                    self.send_response(404)
                else:
                    self.send_response(200)
                body = (value or "").encode()
                if flavor_header:
                    self.send_header("Metadata-Flavor", "Google")
                self.send_header("Content-Type", "application/text")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self):
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
