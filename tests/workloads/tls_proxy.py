"""A TLS-terminating TCP proxy for the OTLP tests.

rotel's receivers speak plain TCP, so to check spanlet's TLS against a real
TLS server (Python's ssl module, i.e. OpenSSL) this accepts TLS on
127.0.0.1:PORT, offering ALPN h2 and http/1.1 (gRPC needs h2), with the
given certificate and key, and forwards the decrypted bytes to
127.0.0.1:TARGET. With a CA file it also requires a client certificate
signed by that CA (mutual TLS). Prints "ready" once listening.

Usage: tls_proxy.py PORT TARGET CERT KEY [CLIENT_CA]
"""

import socket
import ssl
import sys
import threading


def pipe(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(ctx, conn, target):
    try:
        tls = ctx.wrap_socket(conn, server_side=True)
    except (ssl.SSLError, OSError) as err:
        print(f"handshake failed: {err}", flush=True)
        conn.close()
        return
    try:
        upstream = socket.create_connection(("127.0.0.1", target))
    except OSError:
        tls.close()
        return
    threading.Thread(target=pipe, args=(tls, upstream), daemon=True).start()
    pipe(upstream, tls)


def main():
    port, target = int(sys.argv[1]), int(sys.argv[2])
    cert, key = sys.argv[3], sys.argv[4]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    if len(sys.argv) > 5:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(sys.argv[5])
    server = socket.create_server(("127.0.0.1", port))
    print("ready", flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=serve, args=(ctx, conn, target), daemon=True).start()


if __name__ == "__main__":
    main()
