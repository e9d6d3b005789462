/*
 * io.c: blocking socket helpers, complete in the starter.
 *
 * Every call here can be cut short: read(2) and write(2) may move fewer
 * bytes than asked, and any call may fail with EINTR when a signal
 * arrives. The loops below are what "robust I/O" means.
 */
#include "server.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* A lingering close waits this long, and drains this much, at most. */
#define LINGER_MS 2000
#define LINGER_BYTES (1024 * 1024)

long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

ssize_t read_until(int fd, char *buf, size_t cap, long long deadline)
{
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        /* poll(2) waits for a byte (or an EOF) without reading it. */
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ready = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (ready == 0)
            continue; /* the loop checks the deadline */
        ssize_t n = read(fd, buf, cap);
        if (n < 0 && errno == EINTR)
            continue;
        return n;
    }
}

int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            /* EPIPE or ECONNRESET: the client left. EAGAIN: SO_SNDTIMEO
             * passed with the client not reading. */
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

void linger_close(int fd)
{
    /* Closing a socket with unread bytes in its receive buffer makes the
     * kernel send a RST, and a RST can destroy the response before the
     * client has read it. So: our FIN first, then read and throw away
     * until the client closes too (or we run out of patience). */
    if (shutdown(fd, SHUT_WR) == 0) {
        long long deadline = now_ms() + LINGER_MS;
        size_t drained = 0;
        char sink[4096];
        while (drained < LINGER_BYTES) {
            ssize_t n = read_until(fd, sink, sizeof sink, deadline);
            if (n <= 0)
                break;
            drained += (size_t)n;
        }
    }
    close(fd);
}
