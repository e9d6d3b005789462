/*
 * files.c: from a request target to a response: a file, a redirect, a
 * directory's index.html or a listing of it, or an error.
 *
 * A static-file server opens files named by strangers. The target is
 * percent-decoded once, every `..` is resolved on the decoded path and
 * may never climb above the root, the result is resolved with realpath(3)
 * (symlinks followed) and must still be inside the root, and only a
 * regular file is ever read.
 */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

int normalize_path(const char *raw, char *out, size_t cap, int *names_dir)
{
    /* STEP 2: turn the raw path ("/css/a%20b.css") into the relative path
     * it names under the root ("css/a b.css", "" for the root itself),
     * written to out (cap bytes). Percent-decode it once; an encoded NUL,
     * slash or backslash (%00, %2F, %5C) or a bad escape is a 400. Then
     * drop "" and "." segments, and let ".." remove the segment before
     * it: a ".." with nothing before it is a 400 (never clamp it to the
     * root). Set *names_dir when the last segment is "", "." or "..". */
    (void)raw;
    (void)out;
    (void)cap;
    *names_dir = 0;
    return 400;
}

const char *mime_type(const char *name)
{
    /* STEP 2: the Content-Type from the name's extension: html, css, js,
     * json, txt, svg, png, jpg... (with `; charset=utf-8` for text);
     * anything else is application/octet-stream. */
    (void)name;
    return "application/octet-stream";
}

int serve_target(int fd, const struct request *req, enum keep keep)
{
    /* STEP 2: normalize_path(req->path), join it to root_dir, resolve it
     * with realpath(3) (ENOENT, ENOTDIR: 404; EACCES: 403) and check that
     * the result is still inside root_dir (a symlink may lead out: 404).
     * Open it with O_RDONLY | O_NONBLOCK (a FIFO would block a plain
     * open), fstat(2) the descriptor, and serve only a regular file
     * (S_ISREG; a file under a trailing slash is a 404 too): a head with
     * Content-Type and Content-Length, then, unless it is a HEAD, the
     * bytes in chunks (read, write_all). Close the file. A directory
     * named with its trailing slash serves its index.html.
     * STEP 3: a directory without its slash gets a 301 to it; one with
     * its slash and no index.html gets an HTML listing. */
    return send_error(fd, 501, req->method == M_HEAD, keep, NULL);
}
