#!/usr/bin/env python3
"""Interop check of a Fabric gRPC server with an independent implementation.

Uses grpcio (the C-core gRPC library) over mutual TLS:

  --expect serving   presents the given admin certificate; grpc.health.v1
                     Health/Check("") must answer SERVING, and server
                     reflection (v1alpha, the version grpcio-reflection's
                     client speaks) must list fabric.v1.OperatorService.
  --expect refused   presents a self-signed certificate made here (same
                     subject style, but from no cluster CA); the call must
                     fail with UNAVAILABLE because the TLS handshake is
                     refused.

Exit status 0 on the expected outcome, 1 otherwise; what happened is printed.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

OPERATOR_SERVICE = "fabric.v1.OperatorService"
TIMEOUT_S = 10


def self_signed(workdir):
    """A self-signed certificate and key (PEM bytes) from no cluster CA."""
    try:
        return _self_signed_cryptography()
    except ImportError:
        return _self_signed_openssl(workdir)


def _self_signed_cryptography():
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "local"),
            x509.NameAttribute(NameOID.COMMON_NAME, "admin"),
        ]
    )
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _self_signed_openssl(workdir):
    cert = os.path.join(workdir, "self.pem")
    key = os.path.join(workdir, "self.key")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec",
            "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-out", cert, "-days", "1",
            "-subj", "/O=local/CN=admin",
        ],
        check=True,
        capture_output=True,
    )
    with open(cert, "rb") as c, open(key, "rb") as k:
        return c.read(), k.read()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def channel(endpoint, ca, cert, key, server_name):
    creds = grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )
    options = [("grpc.ssl_target_name_override", server_name)]
    return grpc.secure_channel(endpoint, creds, options=options)


def health(chan):
    stub = health_pb2_grpc.HealthStub(chan)
    return stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT_S)


def reflected_services(chan):
    stub = reflection_pb2_grpc.ServerReflectionStub(chan)
    requests = iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    names = []
    for response in stub.ServerReflectionInfo(requests, timeout=TIMEOUT_S):
        if response.HasField("error_response"):
            raise RuntimeError(f"reflection error: {response.error_response}")
        names.extend(s.name for s in response.list_services_response.service)
    return names


def expect_serving(args):
    with channel(
        args.endpoint, read(args.ca), read(args.cert), read(args.key), args.server_name
    ) as chan:
        try:
            response = health(chan)
        except grpc.RpcError as e:
            print(f"FAIL: Health/Check failed: {e.code().name}: {e.details()}")
            return 1
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        print(f"Health/Check(\"\") -> {status}")
        if response.status != health_pb2.HealthCheckResponse.SERVING:
            print("FAIL: expected SERVING")
            return 1
        try:
            services = reflected_services(chan)
        except (grpc.RpcError, RuntimeError) as e:
            print(f"FAIL: reflection failed: {e}")
            return 1
        print(f"reflection v1alpha lists: {', '.join(sorted(services))}")
        if OPERATOR_SERVICE not in services:
            print(f"FAIL: {OPERATOR_SERVICE} not listed")
            return 1
    print("OK: serving")
    return 0


def expect_refused(args):
    with tempfile.TemporaryDirectory() as workdir:
        cert, key = self_signed(workdir)
    with channel(args.endpoint, read(args.ca), cert, key, args.server_name) as chan:
        try:
            response = health(chan)
        except grpc.RpcError as e:
            print(f"Health/Check with a self-signed certificate: {e.code().name}: {e.details()}")
            if e.code() == grpc.StatusCode.UNAVAILABLE:
                print("OK: refused")
                return 0
            print("FAIL: expected UNAVAILABLE")
            return 1
        status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
        print(f"FAIL: a self-signed certificate was accepted (health {status})")
        return 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="host:port")
    parser.add_argument("--ca", required=True, help="cluster CA certificate (PEM)")
    parser.add_argument("--cert", required=True, help="client certificate (PEM)")
    parser.add_argument("--key", required=True, help="client key (PEM)")
    parser.add_argument("--server-name", default="localhost")
    parser.add_argument("--expect", required=True, choices=["serving", "refused"])
    args = parser.parse_args()
    if args.expect == "serving":
        return expect_serving(args)
    return expect_refused(args)


if __name__ == "__main__":
    sys.exit(main())
