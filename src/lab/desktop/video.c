/*
 * desktop-video: a "video player" window for the lab's remote desktops. It repaints a width x height
 * region of the X display at a set frame rate with content that changes every pixel of every frame
 * (like decoded video), so a VNC server on that display really has to send it.
 *
 * Usage: desktop-video [--x X] [--y Y] [--width W] [--height H] [--fps F] [--title T]
 * Control: one command per line on stdin — "play", "pause", "status", "quit". End of stdin quits
 * (the controlling process is gone). Replies, one line each on stdout:
 *   ready window=0x... width=W height=H fps=F
 *   state playing|paused frames=N
 *   error <what>
 * Every frame carries a marker in its top-left 4 pixels (0xRRGGBB values): pixel 0 = 0x564d53 ("VMS"),
 * pixels 1-2 = the wall-clock time it was drawn in ms (high 24 bits, low 24 bits), pixel 3 = the frame
 * number mod 2^24. A client that decodes them measures how old a frame is when it reaches the user.
 * Build: gcc -O2 -Wall -Wextra -o desktop-video video.c -lX11   (scripts/build-desktop-tools.sh)
 */
#define _POSIX_C_SOURCE 200809L
#include <X11/Xlib.h>
#include <X11/Xutil.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MARKER_MAGIC 0x564d53u

static long arg_long(int argc, char **argv, const char *name, long dflt, long lo, long hi) {
  for (int i = 1; i + 1 < argc; i++) {
    if (strcmp(argv[i], name) == 0) {
      char *end = NULL;
      long v = strtol(argv[i + 1], &end, 10);
      if (end == argv[i + 1] || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "desktop-video: %s must be a whole number in %ld..%ld (got %s)\n", name, lo, hi, argv[i + 1]);
        exit(2);
      }
      return v;
    }
  }
  return dflt;
}

static const char *arg_str(int argc, char **argv, const char *name, const char *dflt) {
  for (int i = 1; i + 1 < argc; i++)
    if (strcmp(argv[i], name) == 0) return argv[i + 1];
  return dflt;
}

static int64_t now_ms(clockid_t clk) {
  struct timespec ts;
  clock_gettime(clk, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint32_t hash32(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352dU;
  x ^= x >> 15;
  x *= 0x846ca68bU;
  x ^= x >> 16;
  return x;
}

/* A moving colour pattern plus per-frame noise in the low bits: every pixel changes every frame. */
static void render(uint32_t *px, int w, int h, uint32_t frame, int64_t drawn_ms) {
  uint32_t seed = hash32(frame * 2654435761U);
  for (int y = 0; y < h; y++) {
    uint32_t *row = px + (size_t)y * (size_t)w;
    for (int x = 0; x < w; x++) {
      uint32_t r = (uint32_t)(x + 3 * frame) & 0xff;
      uint32_t g = (uint32_t)(y + 2 * frame) & 0xff;
      uint32_t b = (uint32_t)((x ^ y) + 5 * frame) & 0xff;
      uint32_t n = hash32(seed ^ (uint32_t)(y * w + x)) & 0x0f0f0f;
      row[x] = ((r << 16) | (g << 8) | b) ^ n;
    }
  }
  if (w >= 4) {
    uint64_t t = (uint64_t)drawn_ms;
    px[0] = MARKER_MAGIC;
    px[1] = (uint32_t)((t >> 24) & 0xffffff);
    px[2] = (uint32_t)(t & 0xffffff);
    px[3] = frame & 0xffffff;
  }
}

int main(int argc, char **argv) {
  int x = (int)arg_long(argc, argv, "--x", 0, 0, 16384);
  int y = (int)arg_long(argc, argv, "--y", 0, 0, 16384);
  int w = (int)arg_long(argc, argv, "--width", 320, 4, 4096);
  int h = (int)arg_long(argc, argv, "--height", 240, 1, 4096);
  int fps = (int)arg_long(argc, argv, "--fps", 25, 1, 240);
  const char *title = arg_str(argc, argv, "--title", "desktop-video");
  setvbuf(stdout, NULL, _IOLBF, 0);

  Display *dpy = XOpenDisplay(NULL);
  if (dpy == NULL) {
    fprintf(stderr, "desktop-video: cannot open X display %s\n", getenv("DISPLAY") ? getenv("DISPLAY") : "(DISPLAY unset)");
    return 1;
  }
  int scr = DefaultScreen(dpy);
  Visual *vis = DefaultVisual(dpy, scr);
  if (DefaultDepth(dpy, scr) != 24 || vis->class != TrueColor || vis->red_mask != 0xff0000 || vis->green_mask != 0xff00 || vis->blue_mask != 0xff) {
    fprintf(stderr, "desktop-video: needs a 24-bit TrueColor RGB888 screen (start the server with -depth 24), got depth %d\n", DefaultDepth(dpy, scr));
    return 1;
  }
  XSetWindowAttributes attrs;
  memset(&attrs, 0, sizeof attrs);
  /* No window manager on the lab's desktops: keep the window exactly where it was asked to be. */
  attrs.override_redirect = True;
  attrs.background_pixel = BlackPixel(dpy, scr);
  attrs.event_mask = ExposureMask | StructureNotifyMask;
  Window win = XCreateWindow(dpy, RootWindow(dpy, scr), x, y, (unsigned)w, (unsigned)h, 0, 24, InputOutput, vis,
                             CWOverrideRedirect | CWBackPixel | CWEventMask, &attrs);
  XStoreName(dpy, win, title);
  GC gc = XCreateGC(dpy, win, 0, NULL);
  uint32_t *pixels = calloc((size_t)w * (size_t)h, sizeof(uint32_t));
  if (pixels == NULL) {
    fprintf(stderr, "desktop-video: out of memory for a %dx%d frame\n", w, h);
    return 1;
  }
  XImage *img = XCreateImage(dpy, vis, 24, ZPixmap, 0, (char *)pixels, (unsigned)w, (unsigned)h, 32, w * 4);
  if (img == NULL) {
    fprintf(stderr, "desktop-video: XCreateImage failed\n");
    return 1;
  }
  XMapRaised(dpy, win);
  XSync(dpy, False);

  uint32_t frame = 0;
  render(pixels, w, h, frame, now_ms(CLOCK_REALTIME));
  int playing = 0;
  int mapped = 0;
  int64_t period_ms = 1000 / fps;
  int64_t next_ms = now_ms(CLOCK_MONOTONIC);
  char line[256];
  size_t line_len = 0;
  int stdin_open = 1;

  for (;;) {
    while (XPending(dpy) > 0) {
      XEvent ev;
      XNextEvent(dpy, &ev);
      if (ev.type == MapNotify && !mapped) {
        mapped = 1;
        printf("ready window=0x%lx width=%d height=%d fps=%d\n", (unsigned long)win, w, h, fps);
      }
      if (ev.type == Expose && ev.xexpose.count == 0) XPutImage(dpy, win, gc, img, 0, 0, 0, 0, (unsigned)w, (unsigned)h);
    }
    int timeout = -1;
    if (playing) {
      int64_t now = now_ms(CLOCK_MONOTONIC);
      if (now >= next_ms) {
        frame++;
        render(pixels, w, h, frame, now_ms(CLOCK_REALTIME));
        XPutImage(dpy, win, gc, img, 0, 0, 0, 0, (unsigned)w, (unsigned)h);
        XFlush(dpy);
        next_ms += period_ms;
        /* Behind by more than a frame (a busy machine): skip ahead instead of bursting. */
        if (now - next_ms > period_ms) next_ms = now + period_ms;
      }
      timeout = (int)(next_ms - now_ms(CLOCK_MONOTONIC));
      if (timeout < 0) timeout = 0;
    }
    struct pollfd fds[2] = {{ConnectionNumber(dpy), POLLIN, 0}, {0, POLLIN, 0}};
    int n = poll(fds, stdin_open ? 2 : 1, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("desktop-video: poll");
      return 1;
    }
    if (stdin_open && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
      char buf[256];
      ssize_t got = read(0, buf, sizeof buf);
      if (got <= 0) break; /* the controller is gone */
      for (ssize_t i = 0; i < got; i++) {
        if (buf[i] != '\n') {
          if (line_len < sizeof line - 1) line[line_len++] = buf[i];
          continue;
        }
        line[line_len] = '\0';
        line_len = 0;
        if (strcmp(line, "play") == 0) {
          if (!playing) next_ms = now_ms(CLOCK_MONOTONIC);
          playing = 1;
        } else if (strcmp(line, "pause") == 0) {
          playing = 0;
        } else if (strcmp(line, "quit") == 0) {
          goto out;
        } else if (strcmp(line, "status") != 0) {
          printf("error unknown command '%s' (play, pause, status, quit)\n", line);
          continue;
        }
        printf("state %s frames=%u\n", playing ? "playing" : "paused", frame);
      }
    }
  }
out:
  XDestroyImage(img); /* frees pixels */
  XFreeGC(dpy, gc);
  XDestroyWindow(dpy, win);
  XCloseDisplay(dpy);
  return 0;
}
