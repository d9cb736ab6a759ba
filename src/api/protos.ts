/** Where the .proto files are: ours under src/api/proto, Envoy's (never copied) in @grpc/grpc-js-xds. */
import * as path from 'node:path';
import { PACKAGE_ROOT } from '../common/package-root';

/** Our contracts: Istio's two CA services (re-written from the wire facts) and citadel's node service. */
export const PROTO_DIR = path.join(PACKAGE_ROOT, 'src', 'api', 'proto');

const XDS_DEPS = path.join(path.dirname(require.resolve('@grpc/grpc-js-xds/package.json')), 'deps');

/** include dirs for Envoy's official v3 protos and what they import (ISTIO-FACTS.md). */
export const ENVOY_PROTO_DIRS = ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((d) => path.join(XDS_DEPS, d));

/** googleapis (google/rpc/status.proto) for our own protos. */
export const GOOGLEAPIS_PROTO_DIR = path.join(XDS_DEPS, 'googleapis');
