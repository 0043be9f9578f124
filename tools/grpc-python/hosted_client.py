#!/usr/bin/env python3
"""A hosted-learners client in Python that knows nothing of the contracts in advance.

It learns every message and service from the server through gRPC reflection, so it
shows that any gRPC client, not only the project's Rust code, can use the API.

    python3 hosted_client.py --address 127.0.0.1:50051 list
    python3 hosted_client.py --address 127.0.0.1:50051 --token demo-token \
        call hosted.v1.IntakeService/RegisterStay '{"person": {...}, "stay": {...}}'
"""

import argparse
import json
import sys

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)


def list_services(channel):
    """Service names, asked of the reflection service."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    response = next(stub.ServerReflectionInfo(iter([request])))
    return sorted(service.name for service in response.list_services_response.service)


def call(channel, method_path, request_json, token):
    """Calls `package.Service/Method` with a JSON request; returns the JSON response."""
    service_name, method_name = method_path.split("/", 1)
    pool = descriptor_pool.DescriptorPool(ProtoReflectionDescriptorDatabase(channel))
    method = pool.FindServiceByName(service_name).FindMethodByName(method_name)
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    request = json_format.Parse(request_json, request_class())
    rpc = channel.unary_unary(
        f"/{service_name}/{method_name}",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    metadata = [("authorization", f"Bearer {token}")] if token else []
    response = rpc(request, metadata=metadata, timeout=30)
    return json_format.MessageToJson(response, preserving_proto_field_name=True)


def open_channel(args):
    """TLS when a CA is given (as the services are deployed), plain text otherwise."""
    if args.ca is None:
        return grpc.insecure_channel(args.address)

    def read(path):
        with open(path, "rb") as file:
            return file.read()

    credentials = grpc.ssl_channel_credentials(
        root_certificates=read(args.ca),
        private_key=read(args.key) if args.key else None,
        certificate_chain=read(args.cert) if args.cert else None,
    )
    return grpc.secure_channel(args.address, credentials)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="127.0.0.1:50051")
    parser.add_argument("--token", default=None)
    parser.add_argument(
        "--ca", default=None,
        help="CA certificate (PEM) of the server's: TLS (plain text without it)",
    )
    parser.add_argument("--cert", default=None, help="client certificate (PEM), mutual TLS")
    parser.add_argument("--key", default=None, help="key (PEM) of --cert")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the services through reflection")
    call_parser = commands.add_parser("call", help="call a method with a JSON request")
    call_parser.add_argument("method", help="package.Service/Method")
    call_parser.add_argument("request", help="the request as JSON, '-' for standard input")
    args = parser.parse_args()

    with open_channel(args) as channel:
        if args.command == "list":
            for name in list_services(channel):
                print(name)
            return 0
        request_json = sys.stdin.read() if args.request == "-" else args.request
        json.loads(request_json)  # a clear error for bad JSON, before any call
        try:
            print(call(channel, args.method, request_json, args.token))
        except grpc.RpcError as error:
            print(f"{error.code().name}: {error.details()}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
