// Typed failures of a QMP conversation. Each message says what failed (command, socket) and then
// the client's state, e.g.
//   QMP migrate on /run/vm.qmp failed: GenericError: There's a migration process in progress (client connected, 1 other call pending)
import { AppError } from '../../core/errors.js';

/** Why a QMP connection is no longer usable. */
export type QmpCloseReason =
  | 'closed'          // close() was called
  | 'eof'             // the peer closed the socket (QEMU exited or was killed)
  | 'socket-error'    // ECONNRESET, EPIPE, ...
  | 'protocol-error'  // a line that is not JSON, too long, or a bad greeting
  | 'timeouts'        // too many calls in a row went unanswered: the monitor is wedged
  | 'connect-failed'; // the connection or its handshake never completed

const REASON_TEXT: Record<QmpCloseReason, string> = {
  closed: 'the client was closed by its owner',
  eof: 'the peer closed the connection (QEMU exited or was killed)',
  'socket-error': 'the socket failed',
  'protocol-error': 'the peer broke the QMP protocol',
  timeouts: 'the monitor stopped answering and the client gave up on it',
  'connect-failed': 'the connection could not be established',
};

export function describeCloseReason(reason: QmpCloseReason): string {
  return REASON_TEXT[reason];
}

/** QEMU answered a command with an error. `errorClass` is QMP's class: GenericError, CommandNotFound, DeviceNotFound, ... */
export class QmpError extends AppError {
  readonly errorClass: string;
  readonly desc: string;
  readonly command: string;
  readonly socket: string;

  constructor(command: string, socket: string, errorClass: string, desc: string, state: string) {
    super('QMP_COMMAND_FAILED', `QMP ${command} on ${socket} failed: ${errorClass}: ${desc} (${state})`);
    this.name = 'QmpError';
    this.errorClass = errorClass;
    this.desc = desc;
    this.command = command;
    this.socket = socket;
  }
}

/** No answer within the deadline: a call, the connection's handshake, or a wait for an event. */
export class QmpTimeoutError extends AppError {
  readonly operation: string;
  readonly socket: string;
  readonly timeoutMs: number;

  constructor(operation: string, socket: string, timeoutMs: number, message: string) {
    super('QMP_TIMEOUT', message, { retryable: true });
    this.name = 'QmpTimeoutError';
    this.operation = operation;
    this.socket = socket;
    this.timeoutMs = timeoutMs;
  }
}

/** The connection is gone (or never came up); every call pending on it fails with this. */
export class QmpClosedError extends AppError {
  readonly reason: QmpCloseReason;
  readonly operation: string;
  readonly socket: string;

  constructor(operation: string, socket: string, reason: QmpCloseReason, message: string, cause?: unknown) {
    super('QMP_CLOSED', message, { retryable: false, cause });
    this.name = 'QmpClosedError';
    this.reason = reason;
    this.operation = operation;
    this.socket = socket;
  }
}

/** The peer sent something QMP does not allow; it closes the connection (see QmpClosedError's cause). */
export class QmpProtocolError extends AppError {
  readonly socket: string;

  constructor(socket: string, message: string) {
    super('QMP_PROTOCOL', message);
    this.name = 'QmpProtocolError';
    this.socket = socket;
  }
}
