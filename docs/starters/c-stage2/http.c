/*
 * http.c: reading a request head, parsing it, framing bodies, and writing
 * response heads.
 */
#include "server.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

void consume(struct conn *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

/* Where "\r\n\r\n" starts in buf[0..len], searching from `from`; -1 if
 * it is not there yet. */
static long find_end(const char *buf, size_t len, size_t from)
{
    for (size_t i = from; i + 4 <= len; i++)
        if (memcmp(buf + i, "\r\n\r\n", 4) == 0)
            return (long)i;
    return -1;
}

enum head_result read_head(struct conn *c, int first_byte_ms, size_t *head_len)
{
    long long deadline =
        now_ms() + (c->len == 0 ? first_byte_ms : HEADER_TIMEOUT_MS);
    int started = c->len > 0;
    size_t searched = 0;
    for (;;) {
        /* STEP 1: ignore empty lines (CRLF) before a request line
         * (RFC 9112 2.2): consume() them before looking for the end. */
        long end = find_end(c->buf, c->len, searched);
        if (end >= 0) {
            *head_len = (size_t)end + 4;
            return HEAD_OK;
        }
        searched = c->len > 3 ? c->len - 3 : 0;
        if (c->len == sizeof c->buf)
            return HEAD_FULL;
        ssize_t n = read_until(c->fd, c->buf + c->len, sizeof c->buf - c->len, deadline);
        if (n > 0) {
            if (!started) {
                /* The first byte: the whole head has HEADER_TIMEOUT_MS. */
                started = 1;
                deadline = now_ms() + HEADER_TIMEOUT_MS;
            }
            c->len += (size_t)n;
            continue;
        }
        if (c->len == 0)
            return HEAD_NONE;
        if (n == 0)
            return HEAD_EOF;
        return errno == ETIMEDOUT ? HEAD_TIMEOUT : HEAD_NONE;
    }
}

int parse_request(const char *head, size_t len, struct request *req)
{
    memset(req, 0, sizeof *req);
    /* STEP 1: parse head[0..len), which ends with the empty line.
     * The request line: a method (letters and the other "tchar"s of
     * RFC 9110 5.6.2), one space, a target of visible ASCII, one space,
     * and exactly HTTP/D.D. Set req->method (GET and HEAD are served;
     * POST, PUT, DELETE, OPTIONS, TRACE, PATCH, CONNECT are M_KNOWN),
     * req->minor, req->path and req->query (an absolute-form target,
     * http://host/path, is served by its path). Then one header per line:
     * a tchar name, a colon right after it, a value without control bytes.
     * Return 0 for a good request, 505 for a version other than 1.x, and
     * 400 for everything malformed: a line that does not end in CRLF, a
     * line that starts with a space (obs-fold), no Host (HTTP/1.1) or two.
     * Note Connection (close, keep-alive) for step 4, and check the
     * framing now: Content-Length is digits only and given once;
     * Transfer-Encoding must end with chunked, and never comes with a
     * Content-Length or in HTTP/1.0 (else 400). */
    (void)head;
    (void)len;
    return 501;
}

enum keep keep_alive(const struct request *req)
{
    /* STEP 4: HTTP/1.1 keeps the connection open unless the request says
     * `Connection: close` (KEEP); HTTP/1.0 closes unless it says
     * `Connection: keep-alive` (KEEP_SAY: the answer says it too). */
    (void)req;
    return CLOSE;
}

int answer(int fd, const struct request *req, enum keep keep)
{
    if (req->method == M_GET || req->method == M_HEAD)
        return serve_target(fd, req, keep);
    /* STEP 1: a method this server knows and does not serve is a 405
     * that says `Allow: GET, HEAD`; any other method is a 501. */
    return send_error(fd, 501, 0, keep, NULL);
}

int read_chunked_body(struct conn *c)
{
    /* STEP 5: decode the chunked body that starts at c->buf (RFC 9112
     * 7.1): lines of a hex size (extensions after `;` ignored), CRLF, that
     * many bytes, CRLF; a size 0 ends it, then trailer lines and an empty
     * line. Read more with read_until when c->buf runs out (the header
     * deadline), and consume() what you used: what follows the body is
     * the next request. Return 0 at its end, 400 when it is malformed
     * (a bad size, a bare LF, no CRLF after the data), 413 past BODY_MAX
     * decoded bytes, 408 on a timeout, -1 if the connection failed. */
    (void)c;
    return 501;
}

int skip_body(struct conn *c, uint64_t n)
{
    /* STEP 5: throw away n body bytes: first those already in c->buf,
     * then read the rest (with a deadline). Keep the bytes after the
     * body in c->buf. 0, or -1 if the client went before sending them. */
    (void)c;
    (void)n;
    return -1;
}

const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 301: return "Moved Permanently";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* Room for a head with a Location of a whole encoded target. */
#define OUT_MAX (3 * HEAD_MAX + 1024)

int send_head(int fd, int status, const char *type, long long length,
              const char *extra, enum keep keep)
{
    char date[64];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    static const char *const conn[] = {
        [CLOSE] = "Connection: close\r\n",
        [KEEP] = "",
        [KEEP_SAY] = "Connection: keep-alive\r\n"};
    char out[OUT_MAX];
    int n = snprintf(out, sizeof out,
                     "HTTP/1.1 %d %s\r\n"
                     "Server: c-stage2\r\n"
                     "Date: %s\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %lld\r\n"
                     "X-Content-Type-Options: nosniff\r\n"
                     "%s%s\r\n",
                     status, reason(status), date, type, length,
                     extra ? extra : "", conn[keep]);
    if (n < 0 || (size_t)n >= sizeof out)
        return -1; /* cannot happen with the sizes above */
    return write_all(fd, out, (size_t)n);
}

int send_error(int fd, int status, int head_only, enum keep keep,
               const char *extra)
{
    char body[256];
    int n = snprintf(body, sizeof body,
                     "<!DOCTYPE html>\n<title>%d %s</title>\n<h1>%d %s</h1>\n",
                     status, reason(status), status, reason(status));
    if (send_head(fd, status, "text/html; charset=utf-8", n, extra, keep) < 0)
        return -1;
    return head_only ? 0 : write_all(fd, body, (size_t)n);
}
