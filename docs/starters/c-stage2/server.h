/*
 * server.h: what the files of the stage 2 starter share.
 *
 * A sequential HTTP/1.1 static-file server in C11 + POSIX: one connection
 * at a time, blocking I/O, no library beyond libc.
 */
#ifndef SERVER_H
#define SERVER_H

/* POSIX.1-2008 with its XSI option (realpath is XSI): the same as
 * _POSIX_C_SOURCE 200809L plus realpath. Every .c file includes this
 * header first, before any system header. */
#define _XOPEN_SOURCE 700

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A request head (request line and headers) must fit in this many bytes. */
#define HEAD_MAX 8192
/* The largest request body the server reads (and throws away). */
#define BODY_MAX (1024 * 1024)
/* How long a client has to send a whole request head (or chunked body). */
#define HEADER_TIMEOUT_MS 10000
/* How long a keep-alive connection may wait for its next request. */
#define KEEPALIVE_TIMEOUT_MS 5000
/* How long one write may stay blocked on a client that does not read. */
#define SEND_TIMEOUT_S 10

/* The document root, resolved once at start (no trailing slash). */
extern char root_dir[];

/* ---- io.c: blocking socket helpers ---- */

/* Milliseconds on a clock that never jumps (CLOCK_MONOTONIC). */
long long now_ms(void);
/* Reads once into buf, waiting at most until deadline (a now_ms() value).
 * Returns the bytes read, 0 at end of file, -1 on error or timeout
 * (errno is ETIMEDOUT then). */
ssize_t read_until(int fd, char *buf, size_t cap, long long deadline);
/* Writes all n bytes (partial writes and EINTR handled); 0 or -1. */
int write_all(int fd, const void *buf, size_t n);
/* Sends our FIN, drains what the client still sends (bounded), closes. */
void linger_close(int fd);

/* ---- http.c: requests and responses ---- */

/* One connection: the bytes received and not used yet. */
struct conn {
    int fd;
    size_t len;           /* bytes in buf */
    char buf[HEAD_MAX];   /* a partial head, or what follows a head */
};

/* What read_head found. */
enum head_result {
    HEAD_OK,      /* a whole head is at the start of buf */
    HEAD_FULL,    /* HEAD_MAX bytes and no end of head */
    HEAD_EOF,     /* the client closed in the middle of a head */
    HEAD_TIMEOUT, /* the header timeout passed in the middle of a head */
    HEAD_NONE     /* nothing to answer: closed, reset, or idle too long */
};

enum method { M_OTHER, M_GET, M_HEAD, M_KNOWN /* known, not served */ };

/* What a response says about the connection. */
enum keep {
    CLOSE,   /* `Connection: close`, then close */
    KEEP,    /* stay open (HTTP/1.1's default: nothing said) */
    KEEP_SAY /* stay open and say `Connection: keep-alive` (HTTP/1.0) */
};

struct request {
    enum method method;
    int minor;                   /* HTTP/1.<minor>: 0 or 1 */
    char path[HEAD_MAX + 1];     /* the target's path, still percent-encoded */
    char query[HEAD_MAX + 1];    /* after `?`, or "" */
    int has_query;
    int conn_close;              /* Connection: close */
    int conn_keep_alive;         /* Connection: keep-alive */
    int chunked;                 /* Transfer-Encoding: chunked */
    uint64_t content_length;     /* Content-Length, or 0 */
};

enum head_result read_head(struct conn *c, int first_byte_ms, size_t *head_len);
void consume(struct conn *c, size_t n);
int parse_request(const char *head, size_t len, struct request *req);
int answer(int fd, const struct request *req, enum keep keep);
enum keep keep_alive(const struct request *req);
int read_chunked_body(struct conn *c);
int skip_body(struct conn *c, uint64_t n);

/* Writes a response head; `extra` is more header lines ("Name: v\r\n")
 * or NULL. 0, or -1 if the connection failed. */
int send_head(int fd, int status, const char *type, long long length,
              const char *extra, enum keep keep);
/* A small HTML error page (no body for a HEAD). */
int send_error(int fd, int status, int head_only, enum keep keep,
               const char *extra);
const char *reason(int status);

/* ---- files.c: from a target to a file ---- */

int serve_target(int fd, const struct request *req, enum keep keep);
int normalize_path(const char *raw, char *out, size_t cap, int *names_dir);
const char *mime_type(const char *name);

#endif
