"""A Python workload for the cross-language tests: answers each tunnel with
`python <peer SPIFFE ID>: <what it received>` once the client half-closed. Prints its HBONE port,
then serves until its standard input closes.

usage: python3 serve.py CONFIG.yaml
"""

import pathlib
import sys
import threading

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import meshffi  # noqa: E402


def answer(sock, peer):
    with sock:
        received = b""
        while data := sock.recv(65536):
            received += data
        sock.sendall(f"python {peer}: ".encode() + received)


def main():
    with meshffi.Mesh(pathlib.Path(sys.argv[1]).read_text()) as mesh, mesh.listen() as listener:
        print(listener.port, flush=True)

        def accept():
            while True:
                try:
                    sock, peer = listener.accept()
                except meshffi.MeshError:
                    return
                threading.Thread(target=answer, args=(sock, peer), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        sys.stdin.read()


if __name__ == "__main__":
    main()
