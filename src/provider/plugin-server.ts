/**
 * The plugin process as go-plugin (inside Terraform) expects it: check the
 * magic cookie, serve gRPC on a loopback TCP port (within PLUGIN_MIN_PORT ..
 * PLUGIN_MAX_PORT when Terraform sets them; TCP rather than a Unix socket so
 * that a provider killed with -9 leaves no file behind), with TLS and a
 * fresh certificate when Terraform asks for AutoMTLS by passing
 * `PLUGIN_CLIENT_CERT` (trusting only that client certificate), add
 * go-plugin's health, controller, stdio and broker services, and print the
 * handshake line `1|6|tcp|127.0.0.1:<port>|grpc|<base64 DER certificate>`.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { makeIdentity } from './certificate';

export const MAGIC_COOKIE_KEY = 'TF_PLUGIN_MAGIC_COOKIE';
export const MAGIC_COOKIE_VALUE = 'd602bf8f470bc67ca7faa0386276bbdd4330efaf76d1a219cb4d6991ca9872b2';
export const CORE_PROTOCOL_VERSION = 1;
export const APP_PROTOCOL_VERSION = 6;

/** The directory of our .proto files: src/provider/proto, from the sources or from dist/. */
export function protoDir(here: string = __dirname): string {
  for (let d = here; d !== dirname(d); d = dirname(d)) {
    for (const candidate of [join(d, 'proto'), join(d, 'src', 'provider', 'proto')]) {
      if (existsSync(join(candidate, 'tfplugin6.proto'))) return candidate;
    }
  }
  throw new Error('the provider protocol definitions (src/provider/proto/tfplugin6.proto) are missing from this installation');
}

type Pkg = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** Loads a .proto of ours (fields keep their snake_case names; bytes stay Buffers; enums as names). */
export function loadProto(file: string): Pkg {
  const def = protoLoader.loadSync(join(protoDir(), file), { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true });
  return grpc.loadPackageDefinition(def) as Pkg;
}

/** Levels of hclog, whose JSON lines on stderr Terraform's log shows with the provider's name. */
export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

/** Writes one hclog JSON line to stderr (never to stdout, which carries the handshake). */
export function log(level: LogLevel, message: string, fields: Record<string, unknown> = {}): void {
  process.stderr.write(JSON.stringify({ '@level': level, '@message': message, '@module': 'masterkey', '@timestamp': new Date().toISOString().replace(/Z$/, '000Z'), ...fields }) + '\n');
}

/** Binds 127.0.0.1 on a free port (in PLUGIN_MIN_PORT..PLUGIN_MAX_PORT when both are set); resolves to host:port. */
async function bindLoopback(server: grpc.Server, creds: grpc.ServerCredentials, env: NodeJS.ProcessEnv): Promise<string> {
  const bind = (port: number) => new Promise<number>((resolve, reject) => server.bindAsync(`127.0.0.1:${port}`, creds, (err, p) => (err ? reject(err) : resolve(p))));
  const min = Number(env.PLUGIN_MIN_PORT);
  const max = Number(env.PLUGIN_MAX_PORT);
  if (!(Number.isInteger(min) && Number.isInteger(max) && min > 0 && min <= max)) return `127.0.0.1:${await bind(0)}`;
  for (let port = min; port <= max; port++) {
    try {
      return `127.0.0.1:${await bind(port)}`;
    } catch {
      // taken: try the next one
    }
  }
  throw new Error(`Couldn't bind plugin TCP listener in PLUGIN_MIN_PORT..PLUGIN_MAX_PORT (${min}..${max})`);
}

export interface Served {
  readonly server: grpc.Server;
  /** Stops serving. */
  stop(): void;
}

/**
 * Serves `provider` (the tfplugin6.Provider implementation) until Terraform
 * calls the controller's Shutdown. Returns after the handshake line is out.
 */
export async function servePlugin(provider: grpc.UntypedServiceImplementation, env: NodeJS.ProcessEnv = process.env): Promise<Served> {
  if (env[MAGIC_COOKIE_KEY] !== MAGIC_COOKIE_VALUE) {
    throw new Error('This binary is a plugin. These are not meant to be executed directly.\nPlease execute the program that consumes these plugins, which will load any plugins automatically');
  }
  const offered = (env.PLUGIN_PROTOCOL_VERSIONS ?? String(APP_PROTOCOL_VERSION)).split(',').map((v) => Number(v.trim()));
  if (!offered.includes(APP_PROTOCOL_VERSION)) {
    throw new Error(`terraform-provider-masterkey speaks plugin protocol ${APP_PROTOCOL_VERSION}, but this Terraform offers ${offered.join(', ')}; use Terraform 1.0 or newer.`);
  }
  const tf = loadProto('tfplugin6.proto').tfplugin6;
  const gp = loadProto('go-plugin.proto').plugin;
  const health = loadProto('health.proto').grpc.health.v1;

  const server = new grpc.Server({ 'grpc.max_receive_message_length': 64 * 1024 * 1024 });
  let stopped = false;
  const stop = () => {
    if (stopped) return;
    stopped = true;
    server.forceShutdown();
  };
  /** The long-lived stdio and broker streams, ended on shutdown. */
  const streams = new Set<grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>>();
  const keep = (call: grpc.ServerWritableStream<unknown, unknown> | grpc.ServerDuplexStream<unknown, unknown>) => {
    streams.add(call);
    const drop = () => streams.delete(call);
    call.on('cancelled', drop);
    call.on('close', drop);
  };

  server.addService(tf.Provider.service, provider);
  server.addService(health.Health.service, {
    Check: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => cb(null, { status: 'SERVING' }),
  });
  server.addService(gp.GRPCController.service, {
    Shutdown: (_call: unknown, cb: grpc.sendUnaryData<unknown>) => {
      log('debug', 'shutdown requested by terraform');
      cb(null, {});
      // Let the reply go out, end our streams, then stop once the calls are done (or after a second at most).
      setImmediate(() => {
        for (const s of streams) s.end();
        const exit = () => {
          stop();
          process.exit(0);
        };
        setTimeout(exit, 1000).unref();
        server.tryShutdown(exit);
      });
    },
  });
  server.addService(gp.GRPCStdio.service, {
    // Our output goes to stderr as hclog lines, which go-plugin reads directly; the stream stays open and empty.
    StreamStdio: (call: grpc.ServerWritableStream<unknown, unknown>) => {
      keep(call);
      call.on('cancelled', () => call.end());
    },
  });
  server.addService(gp.GRPCBroker.service, {
    // No sub-plugins are brokered; keep the stream open until Terraform closes it.
    StartStream: (call: grpc.ServerDuplexStream<unknown, unknown>) => {
      keep(call);
      call.on('data', () => undefined);
      call.on('end', () => call.end());
      call.on('error', () => undefined);
    },
  });

  const clientCert = env.PLUGIN_CLIENT_CERT;
  let certField = '';
  let creds: grpc.ServerCredentials;
  if (clientCert) {
    const id = await makeIdentity();
    creds = grpc.ServerCredentials.createSsl(Buffer.from(clientCert), [{ cert_chain: Buffer.from(id.certPem), private_key: Buffer.from(id.keyPem) }], true);
    // go-plugin sends the raw leaf certificate, base64 without padding (the line cannot hold PEM's newlines).
    certField = id.certDer.toString('base64').replace(/=+$/, '');
    log('info', 'configured automatic mTLS with a fresh self-signed certificate');
  } else {
    creds = grpc.ServerCredentials.createInsecure();
  }
  const address = await bindLoopback(server, creds, env);
  process.stdout.write(`${CORE_PROTOCOL_VERSION}|${APP_PROTOCOL_VERSION}|tcp|${address}|grpc|${certField}\n`);
  log('debug', 'plugin address', { network: 'tcp', address });
  // Terraform forwards Ctrl-C to the process group and then asks the provider to stop; a rotation in progress must not die half-way.
  process.on('SIGINT', () => log('trace', 'plugin received interrupt signal, ignoring'));
  for (const sig of ['SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      stop();
      process.exit(1);
    });
  }
  return { server, stop };
}
