import type { Command } from 'commander';
import { registerProxyStatus } from './proxy-status';
import { registerStatus } from './status';
import { registerCa } from './ca';
import { registerCert } from './cert';
import { registerStore } from './store';
import { registerMarathonSim } from './marathon-sim';
import { registerAgent } from './agent';
import { registerToken } from './token';
import { registerServer } from './server';
import { registerDemo } from './demo';
import { registerEnvoyBootstrap } from './envoy-bootstrap';
import { registerGrpcBootstrap } from './grpc-bootstrap';
import { registerInject } from './inject';
import { registerNode } from './node';
import { registerAudit } from './audit';
import { registerPolicy } from './policy';
import { registerAdmissionProxy } from './admission-proxy';

/** Each command registers itself on the program; one file per command group. */
export type RegisterCommand = (program: Command) => void;

export const COMMANDS: RegisterCommand[] = [registerDemo, registerCa, registerCert, registerServer, registerStore, registerMarathonSim, registerToken, registerNode, registerAudit, registerAgent, registerEnvoyBootstrap, registerGrpcBootstrap, registerInject, registerPolicy, registerProxyStatus, registerAdmissionProxy, registerStatus];
