// udp_recv: a UDP receive path for the telemetry collector, as a Node-API addon.
//
// One non-blocking socket, watched by a libuv poll handle on Node's own event loop. When it is
// readable, recvmmsg() fills up to `slots` datagrams at once into one buffer that JavaScript shares
// (an ArrayBuffer, slot i at i * slotBytes), with per-datagram metadata in a second shared buffer
// (META_INTS int32 words per slot, see below), and JavaScript is called ONCE per batch with the count.
// At most `maxBatches` batches per wakeup, so timers and other I/O still get their turn under load.
//
// Metadata words of slot i (meta[i * META_INTS + k]):
//   0 length in bytes (of what was kept; the slot's size when truncated)
//   1 1 if the datagram was longer than the slot and was cut (MSG_TRUNC), else 0
//   2 source family: 4 or 6 (0 if unknown)
//   3 source port
//   4..7 source address as stored in the sockaddr (network byte order bytes): IPv4 uses word 4 only
//
// Lifetime: open() returns a handle object that owns the socket; while open, the addon holds a strong
// reference to it. close(handle) stops the poll, closes the handle and the fd; it is safe twice and
// from inside the batch callback. Once libuv reports the poll handle closed, the references are
// dropped and the memory goes with the handle object's finalizer.
//
// Built by scripts/build-native.sh with plain gcc against /usr/include/node; the napi_* and uv_*
// symbols resolve from the node binary at load time.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <node_api.h>
#include <uv.h>

#ifndef NODE_GYP_MODULE_NAME
#define NODE_GYP_MODULE_NAME udp_recv
#endif

#define META_INTS 8
#define MAX_SLOTS 1024
#define MAX_SLOT_BYTES (1 << 20)

typedef struct rx {
  napi_env env;
  int fd;
  uv_poll_t poll;
  int poll_inited;  // uv_poll_init succeeded: uv_close must run before the memory goes
  int closed;       // close requested (fd closed, poll closing)
  int poll_closed;  // libuv's close callback ran (or the poll was never initialised)
  int finalized;    // the handle object's finalizer ran
  int env_gone;     // the environment is being torn down: no more napi calls
  int hook_added;
  napi_ref self;
  napi_ref on_batch;
  napi_ref on_error;
  napi_async_context actx;
  uint8_t *buf;
  int32_t *meta;
  uint32_t slots;
  uint32_t slot_bytes;
  uint32_t max_batches;
  struct mmsghdr *msgs;
  struct iovec *iov;
  struct sockaddr_storage *names;
  char where[80];  // "address:port" for error messages
} rx_t;

// ---- small helpers -------------------------------------------------------------------------------

#define CHECK(env, call)                                                   \
  do {                                                                     \
    if ((call) != napi_ok) {                                               \
      throw_last(env, #call);                                              \
      return NULL;                                                         \
    }                                                                      \
  } while (0)

static void throw_last(napi_env env, const char *what) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) return;
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  char msg[256];
  snprintf(msg, sizeof msg, "udp_recv: %s failed: %s", what,
           info != NULL && info->error_message != NULL ? info->error_message : "unknown N-API error");
  napi_throw_error(env, "ERR_UDP_RECV_NAPI", msg);
}

/** An Error whose message is "<syscall> <ERRNAME> <where>", with code, errno, syscall and address. */
static napi_value errno_error(napi_env env, const char *syscall, int err, const char *where) {
  const char *name = uv_err_name(-err);
  char msg[256];
  snprintf(msg, sizeof msg, "%s %s %s (%s)", syscall, name, where, strerror(err));
  napi_value m, code, e, v;
  if (napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &m) != napi_ok) return NULL;
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code) != napi_ok) return NULL;
  if (napi_create_error(env, code, m, &e) != napi_ok) return NULL;
  napi_set_named_property(env, e, "code", code);
  if (napi_create_int32(env, -err, &v) == napi_ok) napi_set_named_property(env, e, "errno", v);
  if (napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &v) == napi_ok) napi_set_named_property(env, e, "syscall", v);
  if (napi_create_string_utf8(env, where, NAPI_AUTO_LENGTH, &v) == napi_ok) napi_set_named_property(env, e, "address", v);
  return e;
}

/** Throws errno_error(...), or a plain Error with the same words if that could not be made: never nothing. */
static void throw_errno(napi_env env, const char *syscall, int err, const char *where) {
  napi_value e = errno_error(env, syscall, err, where);
  if (e != NULL && napi_throw(env, e) == napi_ok) return;
  char msg[256];
  snprintf(msg, sizeof msg, "%s %s %s (%s)", syscall, uv_err_name(-err), where, strerror(err));
  napi_throw_error(env, uv_err_name(-err), msg);
}

static int get_u32_prop(napi_env env, napi_value obj, const char *key, uint32_t dflt, uint32_t *out) {
  bool has = false;
  if (napi_has_named_property(env, obj, key, &has) != napi_ok) return -1;
  if (!has) {
    *out = dflt;
    return 0;
  }
  napi_value v;
  if (napi_get_named_property(env, obj, key, &v) != napi_ok) return -1;
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_undefined) {
    *out = dflt;
    return 0;
  }
  if (t != napi_number) return -1;
  return napi_get_value_uint32(env, v, out) == napi_ok ? 0 : -1;
}

// ---- closing ---------------------------------------------------------------------------------------

static void rx_free(rx_t *rx) {
  free(rx->msgs);
  free(rx->iov);
  free(rx->names);
  free(rx);
}

/** Drops what the open socket held on the JavaScript side; the handle object may then be collected. */
static void release_js(rx_t *rx) {
  if (rx->env_gone) return;
  napi_env env = rx->env;
  napi_handle_scope scope;
  int scoped = napi_open_handle_scope(env, &scope) == napi_ok;
  if (rx->actx != NULL) {
    napi_async_destroy(env, rx->actx);
    rx->actx = NULL;
  }
  if (rx->on_batch != NULL) {
    napi_delete_reference(env, rx->on_batch);
    rx->on_batch = NULL;
  }
  if (rx->on_error != NULL) {
    napi_delete_reference(env, rx->on_error);
    rx->on_error = NULL;
  }
  if (rx->self != NULL) {
    uint32_t count = 1;
    napi_reference_unref(env, rx->self, &count);
  }
  if (scoped) napi_close_handle_scope(env, scope);
}

static void on_poll_closed(uv_handle_t *h) {
  rx_t *rx = (rx_t *)h->data;
  rx->poll_closed = 1;
  if (rx->finalized) {
    if (!rx->env_gone) rx_free(rx);
    return;
  }
  release_js(rx);
}

static void cleanup_hook(void *arg);

/** Stops receiving: poll stopped and closing, fd closed. Safe to call more than once. */
static void rx_close(rx_t *rx) {
  if (rx->closed) return;
  rx->closed = 1;
  if (rx->poll_inited) {
    uv_poll_stop(&rx->poll);
    uv_close((uv_handle_t *)&rx->poll, on_poll_closed);
  } else {
    rx->poll_closed = 1;
  }
  if (rx->fd >= 0) {
    close(rx->fd);
    rx->fd = -1;
  }
  if (rx->hook_added && !rx->env_gone) {
    napi_remove_env_cleanup_hook(rx->env, cleanup_hook, rx);
    rx->hook_added = 0;
  }
  if (!rx->poll_inited) release_js(rx);
}

/** The environment is going away with the socket still open: close it, make no more JS calls. */
static void cleanup_hook(void *arg) {
  rx_t *rx = (rx_t *)arg;
  rx->hook_added = 0;
  rx->env_gone = 1;
  rx_close(rx);
  // The memory is left to the process's exit: libuv may not run the close callback any more.
}

static void finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  rx_t *rx = (rx_t *)data;
  rx->finalized = 1;
  if (rx->self != NULL && !rx->env_gone) {
    napi_delete_reference(env, rx->self);
    rx->self = NULL;
  }
  if (!rx->closed) {
    // Only at teardown (an open socket's handle is strongly held): stop without calling JS.
    rx->env_gone = 1;
    rx_close(rx);
    return;
  }
  if (rx->poll_closed && !rx->env_gone) rx_free(rx);
}

// ---- receiving -------------------------------------------------------------------------------------

static void surface_exception(napi_env env) {
  bool pending = false;
  if (napi_is_exception_pending(env, &pending) != napi_ok || !pending) return;
  napi_value exc;
  if (napi_get_and_clear_last_exception(env, &exc) == napi_ok) napi_fatal_exception(env, exc);
}

static void call_js(rx_t *rx, napi_ref fn_ref, napi_value arg) {
  napi_env env = rx->env;
  napi_value fn, self, result;
  if (fn_ref == NULL || napi_get_reference_value(env, fn_ref, &fn) != napi_ok || fn == NULL) return;
  if (napi_get_reference_value(env, rx->self, &self) != napi_ok || self == NULL) napi_get_undefined(env, &self);
  if (napi_make_callback(env, rx->actx, self, fn, 1, &arg, &result) != napi_ok) surface_exception(env);
}

static void report_error(rx_t *rx, const char *syscall, int err) {
  napi_value e = errno_error(rx->env, syscall, err, rx->where);
  if (e != NULL) call_js(rx, rx->on_error, e);
  else surface_exception(rx->env);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  (void)events;
  rx_t *rx = (rx_t *)h->data;
  if (rx->closed || rx->env_gone) return;
  napi_env env = rx->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  if (status < 0) {
    // libuv stops the handle itself before reporting a poll error (e.g. POLLERR): clear the socket's
    // pending error and watch again, or nothing would ever be received; if that fails too, say so.
    int pending = 0;
    socklen_t plen = sizeof pending;
    getsockopt(rx->fd, SOL_SOCKET, SO_ERROR, &pending, &plen);
    report_error(rx, "poll", -status);
    if (!rx->closed) {
      int r = uv_poll_start(&rx->poll, UV_READABLE, on_poll);
      if (r != 0) report_error(rx, "uv_poll_start (receiving has stopped)", -r);
    }
    goto out;
  }
  for (uint32_t b = 0; b < rx->max_batches; b++) {
    for (uint32_t i = 0; i < rx->slots; i++) {
      rx->msgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
      rx->msgs[i].msg_hdr.msg_flags = 0;
      rx->msgs[i].msg_len = 0;
    }
    int n;
    int tries = 0;
    do n = recvmmsg(rx->fd, rx->msgs, rx->slots, MSG_DONTWAIT, NULL);
    while (n < 0 && errno == EINTR && ++tries < 8);
    if (n < 0) {
      int err = errno;
      if (err != EAGAIN && err != EWOULDBLOCK && err != EINTR) report_error(rx, "recvmmsg", err);
      break;
    }
    if (n == 0) break;
    for (int i = 0; i < n; i++) {
      int32_t *m = rx->meta + (size_t)i * META_INTS;
      const struct msghdr *hd = &rx->msgs[i].msg_hdr;
      m[0] = (int32_t)rx->msgs[i].msg_len;
      m[1] = (hd->msg_flags & MSG_TRUNC) ? 1 : 0;
      const struct sockaddr_storage *sa = &rx->names[i];
      if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
        m[2] = 4;
        m[3] = ntohs(s4->sin_port);
        memcpy(&m[4], &s4->sin_addr, 4);
        m[5] = m[6] = m[7] = 0;
      } else if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
        m[2] = 6;
        m[3] = ntohs(s6->sin6_port);
        memcpy(&m[4], &s6->sin6_addr, 16);
      } else {
        m[2] = 0;
        m[3] = 0;
        m[4] = m[5] = m[6] = m[7] = 0;
      }
    }
    napi_value count;
    if (napi_create_uint32(env, (uint32_t)n, &count) != napi_ok) break;
    call_js(rx, rx->on_batch, count);
    if (rx->closed) break;           // closed from inside the callback: the fd is gone
    if ((uint32_t)n < rx->slots) break;  // the queue is empty (or nearly): the next wakeup says
  }
out:
  napi_close_handle_scope(env, scope);
}

// ---- open ------------------------------------------------------------------------------------------

/**
 * open({ host, port, recvBufferBytes?, forceRecvBuffer? (0/1, default 1), slots?, slotBytes?, maxBatches? }, onBatch(count), onError(err))
 * → { port, address, family, recvBufferBytes, forced, buffer: ArrayBuffer, meta: ArrayBuffer, slots, slotBytes }
 * host must be a numeric IPv4 or IPv6 address. Throws an Error with code "EADDRINUSE" etc. when bind fails.
 */
static napi_value js_open(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  napi_valuetype t0, t1, t2;
  if (argc < 3 || napi_typeof(env, argv[0], &t0) != napi_ok || napi_typeof(env, argv[1], &t1) != napi_ok ||
      napi_typeof(env, argv[2], &t2) != napi_ok || t0 != napi_object || t1 != napi_function || t2 != napi_function) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "udp_recv.open(options, onBatch, onError): wrong argument types");
    return NULL;
  }
  napi_value hv;
  char host[64];
  size_t hlen = 0;
  CHECK(env, napi_get_named_property(env, argv[0], "host", &hv));
  if (napi_get_value_string_utf8(env, hv, host, sizeof host, &hlen) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "udp_recv.open: options.host must be a string");
    return NULL;
  }
  uint32_t port, rcvbuf, slots, slot_bytes, max_batches, may_force;
  if (get_u32_prop(env, argv[0], "port", 0, &port) || get_u32_prop(env, argv[0], "recvBufferBytes", 0, &rcvbuf) ||
      get_u32_prop(env, argv[0], "forceRecvBuffer", 1, &may_force) ||
      get_u32_prop(env, argv[0], "slots", 64, &slots) || get_u32_prop(env, argv[0], "slotBytes", 65536, &slot_bytes) ||
      get_u32_prop(env, argv[0], "maxBatches", 16, &max_batches) || port > 65535 || slots < 1 || slots > MAX_SLOTS ||
      slot_bytes < 1 || slot_bytes > MAX_SLOT_BYTES || max_batches < 1 || rcvbuf > INT32_MAX) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE",
                           "udp_recv.open: port 0-65535, slots 1-1024, slotBytes 1-1048576, maxBatches >= 1, recvBufferBytes < 2^31");
    return NULL;
  }

  struct sockaddr_storage ss;
  socklen_t sslen;
  memset(&ss, 0, sizeof ss);
  int family;
  if (inet_pton(AF_INET, host, &((struct sockaddr_in *)&ss)->sin_addr) == 1) {
    family = AF_INET;
    ((struct sockaddr_in *)&ss)->sin_family = AF_INET;
    ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
    sslen = sizeof(struct sockaddr_in);
  } else if (inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1) {
    family = AF_INET6;
    ((struct sockaddr_in6 *)&ss)->sin6_family = AF_INET6;
    ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
    sslen = sizeof(struct sockaddr_in6);
  } else {
    char msg[128];
    snprintf(msg, sizeof msg, "udp_recv.open: host %s is not a numeric IPv4 or IPv6 address", host);
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", msg);
    return NULL;
  }
  char where[80];
  snprintf(where, sizeof where, family == AF_INET6 ? "[%s]:%u" : "%s:%u", host, port);

  int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    throw_errno(env, "socket", errno, where);
    return NULL;
  }
  int forced = 0;
  if (rcvbuf > 0) {
    int v = (int)rcvbuf;
    // As root, SO_RCVBUFFORCE goes past net.core.rmem_max; otherwise (EPERM) SO_RCVBUF, capped by it.
    if (may_force && setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof v) == 0) forced = 1;
    else if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof v) != 0) {
      int err = errno;
      close(fd);
      throw_errno(env, "setsockopt(SO_RCVBUF)", err, where);
      return NULL;
    }
  }
  if (family == AF_INET6) {
    int off = 0;  // "::" takes IPv4 too, as Node's dgram does
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  }
  if (bind(fd, (struct sockaddr *)&ss, sslen) != 0) {
    int err = errno;
    close(fd);
    throw_errno(env, "bind", err, where);
    return NULL;
  }
  struct sockaddr_storage bound;
  socklen_t blen = sizeof bound;
  int actual = 0;
  socklen_t alen = sizeof actual;
  if (getsockname(fd, (struct sockaddr *)&bound, &blen) != 0 || getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &actual, &alen) != 0) {
    int err = errno;
    close(fd);
    throw_errno(env, "getsockname", err, where);
    return NULL;
  }
  uint32_t bound_port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&bound)->sin_port : ((struct sockaddr_in6 *)&bound)->sin6_port);

  rx_t *rx = calloc(1, sizeof *rx);
  if (rx != NULL) {
    rx->msgs = calloc(slots, sizeof *rx->msgs);
    rx->iov = calloc(slots, sizeof *rx->iov);
    rx->names = calloc(slots, sizeof *rx->names);
  }
  if (rx == NULL || rx->msgs == NULL || rx->iov == NULL || rx->names == NULL) {
    close(fd);
    if (rx != NULL) rx_free(rx);
    throw_errno(env, "calloc", ENOMEM, where);
    return NULL;
  }
  rx->env = env;
  rx->fd = fd;
  rx->slots = slots;
  rx->slot_bytes = slot_bytes;
  rx->max_batches = max_batches;
  snprintf(rx->where, sizeof rx->where, family == AF_INET6 ? "[%s]:%u" : "%s:%u", host, bound_port);

  // From here on, failures go through rx_close (which closes the fd) and the finalizer frees.
  napi_value handle, buffer, meta, v;
  void *bufp = NULL, *metap = NULL;
  if (napi_create_object(env, &handle) != napi_ok || napi_wrap(env, handle, rx, finalize, NULL, NULL) != napi_ok) {
    close(fd);
    rx_free(rx);
    throw_last(env, "napi_wrap");
    return NULL;
  }
  napi_status s = napi_create_reference(env, handle, 1, &rx->self);
  if (s == napi_ok) s = napi_create_arraybuffer(env, (size_t)slots * slot_bytes, &bufp, &buffer);
  if (s == napi_ok) s = napi_create_arraybuffer(env, (size_t)slots * META_INTS * sizeof(int32_t), &metap, &meta);
  if (s == napi_ok) s = napi_create_reference(env, argv[1], 1, &rx->on_batch);
  if (s == napi_ok) s = napi_create_reference(env, argv[2], 1, &rx->on_error);
  napi_value resname;
  if (s == napi_ok) s = napi_create_string_utf8(env, "VMShadowUdpReceive", NAPI_AUTO_LENGTH, &resname);
  if (s == napi_ok) s = napi_async_init(env, handle, resname, &rx->actx);
  if (s == napi_ok) s = napi_set_named_property(env, handle, "buffer", buffer);
  if (s == napi_ok) s = napi_set_named_property(env, handle, "meta", meta);
  if (s == napi_ok) s = napi_create_uint32(env, bound_port, &v);
  if (s == napi_ok) s = napi_set_named_property(env, handle, "port", v);
  if (s == napi_ok) s = napi_create_uint32(env, family == AF_INET6 ? 6 : 4, &v);
  if (s == napi_ok) s = napi_set_named_property(env, handle, "family", v);
  if (s == napi_ok) s = napi_create_string_utf8(env, host, NAPI_AUTO_LENGTH, &v);
  if (s == napi_ok) s = napi_set_named_property(env, handle, "address", v);
  if (s == napi_ok) s = napi_create_int32(env, actual, &v);
  if (s == napi_ok) s = napi_set_named_property(env, handle, "recvBufferBytes", v);
  if (s == napi_ok) s = napi_get_boolean(env, forced, &v);
  if (s == napi_ok) s = napi_set_named_property(env, handle, "recvBufferForced", v);
  if (s == napi_ok) s = napi_create_uint32(env, slots, &v);
  if (s == napi_ok) s = napi_set_named_property(env, handle, "slots", v);
  if (s == napi_ok) s = napi_create_uint32(env, slot_bytes, &v);
  if (s == napi_ok) s = napi_set_named_property(env, handle, "slotBytes", v);
  if (s != napi_ok) {
    throw_last(env, "setting up the handle");
    rx_close(rx);
    return NULL;
  }
  rx->buf = (uint8_t *)bufp;
  rx->meta = (int32_t *)metap;
  for (uint32_t i = 0; i < slots; i++) {
    rx->iov[i].iov_base = rx->buf + (size_t)i * slot_bytes;
    rx->iov[i].iov_len = slot_bytes;
    rx->msgs[i].msg_hdr.msg_iov = &rx->iov[i];
    rx->msgs[i].msg_hdr.msg_iovlen = 1;
    rx->msgs[i].msg_hdr.msg_name = &rx->names[i];
    rx->msgs[i].msg_hdr.msg_namelen = sizeof(struct sockaddr_storage);
  }
  // The shared buffers stay alive as properties of the handle, which we hold while open.
  uv_loop_t *loop = NULL;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == NULL) {
    throw_last(env, "napi_get_uv_event_loop");
    rx_close(rx);
    return NULL;
  }
  int r = uv_poll_init(loop, &rx->poll, fd);
  if (r != 0) {
    rx_close(rx);
    throw_errno(env, "uv_poll_init", -r, rx->where);
    return NULL;
  }
  rx->poll_inited = 1;
  rx->poll.data = rx;
  r = uv_poll_start(&rx->poll, UV_READABLE, on_poll);
  if (r != 0) {
    rx_close(rx);
    throw_errno(env, "uv_poll_start", -r, rx->where);
    return NULL;
  }
  if (napi_add_env_cleanup_hook(env, cleanup_hook, rx) == napi_ok) rx->hook_added = 1;
  return handle;
}

/** close(handle): stops receiving and closes the socket; safe twice, and from inside onBatch. */
static napi_value js_close(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  void *data = NULL;
  if (argc < 1 || napi_unwrap(env, argv[0], &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "udp_recv.close(handle): not a handle from open()");
    return NULL;
  }
  rx_close((rx_t *)data);
  return NULL;
}

/** formatAddress(family, w0, w1, w2, w3): the text of a source address from metadata words 2 and 4..7. */
static napi_value js_format_address(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t w[5] = {0, 0, 0, 0, 0};
  for (size_t i = 0; i < argc && i < 5; i++) {
    if (napi_get_value_int32(env, argv[i], &w[i]) != napi_ok) {
      napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "udp_recv.formatAddress: numbers expected");
      return NULL;
    }
  }
  unsigned char bytes[16];
  memcpy(bytes, &w[1], 16);
  char text[INET6_ADDRSTRLEN];
  int r = uv_inet_ntop(w[0] == 6 ? AF_INET6 : AF_INET, bytes, text, sizeof text);
  if (r != 0) {
    throw_errno(env, "inet_ntop", -r, "?");
    return NULL;
  }
  napi_value out;
  CHECK(env, napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &out));
  return out;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn, v;
  CHECK(env, napi_create_function(env, "open", NAPI_AUTO_LENGTH, js_open, NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "open", fn));
  CHECK(env, napi_create_function(env, "close", NAPI_AUTO_LENGTH, js_close, NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "close", fn));
  CHECK(env, napi_create_function(env, "formatAddress", NAPI_AUTO_LENGTH, js_format_address, NULL, &fn));
  CHECK(env, napi_set_named_property(env, exports, "formatAddress", fn));
  CHECK(env, napi_create_uint32(env, META_INTS, &v));
  CHECK(env, napi_set_named_property(env, exports, "metaInts", v));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
