/*
 * httpd_tasks.c - a small HTTP/1.1 server with one task per connection.
 *
 *   httpd_tasks [--port P] [--root DIR] [--workers N] [--idle-ms MS]
 *               [--header-ms MS] [--eof]
 *
 * It listens on 127.0.0.1:P (0, the default, lets the kernel choose; the
 * first line printed, "port N", says which port it got) and serves:
 *
 *   GET /              a fixed page, "Hello, world\n" as text/plain: the
 *                      same response bytes as bench/go/httpd, the Go
 *                      responder it is measured against;
 *   GET /files/NAME    the regular file NAME under DIR (--root; without
 *                      it every /files/ request gets 404), with its
 *                      Content-Length.  NAME is percent-decoded, then cut
 *                      at each "/": a ".." segment gets 403; an empty or
 *                      "." segment, a missing file, anything but a
 *                      regular file, and a symbolic link anywhere on the
 *                      way (each segment is opened with O_NOFOLLOW from
 *                      its directory) get 404, so nothing outside DIR is
 *                      ever reached.  open, fstat and read run through
 *                      chan_blocking, which parks the task while a helper
 *                      thread waits for the disk; the file goes out in
 *                      64 KiB pieces;
 *   HEAD               of either, the same headers without the body.
 *
 * Connections are kept alive by default in HTTP/1.1 ("Connection: close"
 * ends them after the response); an HTTP/1.0 connection ends after the
 * response unless the request asked for "Connection: keep-alive".
 * Requests that arrive together (pipelined) are parsed from one read and
 * answered with one write.  A request head (the request line and the
 * header fields) is limited to 8 KiB: a longer request line gets 414, a
 * longer head 431.  A malformed request line or header field, an HTTP/1.1
 * request without exactly one Host, a bad Content-Length get 400; another
 * HTTP version than 1.x gets 505; POST, PUT, DELETE, PATCH, OPTIONS,
 * TRACE and CONNECT get 405 (with "Allow: GET, HEAD"), other methods 501.
 * Request bodies are not accepted: a GET or HEAD that announces one gets
 * 413 (Content-Length) or 501 (Transfer-Encoding).  Every one of these
 * errors but 403, 404, 405 (on a request without a body) and 500 (a file
 * that cannot be read) ends the connection after the response, since
 * what follows it cannot be trusted.
 * Responses carry no Date field (the fixed page must stay byte for byte
 * the Go responder's).
 *
 * Timeouts.  Each task waits for its socket with a select over the socket
 * (CHAN_FD_CASE), a quit channel and a timeout, so the worker thread is
 * free meanwhile.  A connection that sends nothing for --idle-ms (default
 * 60000) between requests is closed.  A request whose head is not complete
 * --header-ms (default 10000) after its first byte arrived gets 408 and
 * the connection is closed: a client that stops in the middle of a
 * request holds its task no longer than that.  A client that does not
 * read its responses is dropped when a write makes no progress for
 * --idle-ms.  After an error, or a response that ends the connection, the
 * server shuts down its sending side and discards what the client still
 * sends, for up to a second, before it closes: closing with unread input
 * would reset the connection and could destroy the response on its way.
 *
 * Shutdown.  SIGINT or SIGTERM, received through a signal channel (and,
 * with --eof, the end of standard input: the protocol of
 * bench/echo/http.sh) shut it down gracefully: the listener is closed
 * with chan_fd_close, which wakes the accepting task; the quit channel is
 * closed, which wakes every connection waiting for a request, and those
 * close; requests already received are answered (with "Connection:
 * close"), a request still arriving is dropped.  A
 * wait group tells when the last connection is done; then it prints what
 * it served and "bye", and exits 0.
 *
 * --workers N sets the scheduler's worker threads (default: one per
 * online CPU).  The soft limit on open descriptors is raised to the hard
 * limit, since every connection is one.  SIGPIPE never comes: chan_write
 * does not raise it.  Exit status 2 for bad arguments, 1 if it cannot
 * start.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <chan.h>

#define MS ((int64_t)1000000)

enum {
    MAX_HEAD = 8192,       /* request line and header fields, bytes */
    OUT_CAP = 16384,       /* responses gathered before one write */
    FILE_CHUNK = 65536,    /* bytes of a file read and written at once */
    LINGER_MAX = 262144,   /* bytes discarded before a close, at most */
};

static const int64_t linger_ns = 1000 * MS;
static int64_t idle_ns = 60000 * MS;
static int64_t header_ns = 10000 * MS;
static int root_fd = -1;        /* --root, or -1 */

static chan_wg_t *wg;           /* the acceptor and every connection */
static chan_t *quit;            /* closed at shutdown */
static atomic_int stopping;     /* set just before quit is closed */
static atomic_long connections, requests, timed_out, bad_requests;

/* The fixed page: the same bytes as bench/go/httpd. */
#define PAGE_HEAD "HTTP/1.1 200 OK\r\n"                                  \
                  "Content-Type: text/plain\r\n"                        \
                  "Content-Length: 13\r\n"
#define PAGE_BODY "Hello, world\n"
static const char page[] = PAGE_HEAD "\r\n" PAGE_BODY;

static int64_t now_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
        abort(); /* CLOCK_MONOTONIC exists on every system libchan runs on */
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ------------------------------------------------------------ parsing */

/* A request head, as parse_head found it. */
struct req {
    const char *method;
    size_t method_len;
    const char *target;
    size_t target_len;
    int minor;          /* HTTP/1.0 or HTTP/1.1 (and later 1.x) */
    int hosts;          /* Host fields seen */
    int close;          /* "Connection: close" */
    int keep_alive;     /* "Connection: keep-alive" */
    int te;             /* a Transfer-Encoding field */
    int64_t length;     /* Content-Length, or -1 */
    int keep;           /* out: the connection goes on after the response */
};

/* RFC 9110 token characters. */
static int tchar(unsigned char c)
{
    return isalnum(c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static int is_method(const struct req *r, const char *m)
{
    return r->method_len == strlen(m) && memcmp(r->method, m, r->method_len) == 0;
}

/* The request line, without its line end: 0, or -status. */
static int request_line(const char *p, size_t n, struct req *r)
{
    const char *sp1 = memchr(p, ' ', n);
    if (!sp1 || sp1 == p)
        return -400;
    for (const char *q = p; q < sp1; q++)
        if (!tchar((unsigned char)*q))
            return -400;
    const char *t = sp1 + 1, *end = p + n;
    const char *sp2 = memchr(t, ' ', (size_t)(end - t));
    if (!sp2 || sp2 == t)
        return -400;
    for (const char *q = t; q < sp2; q++)
        if ((unsigned char)*q <= ' ' || (unsigned char)*q >= 0x7f)
            return -400;
    const char *v = sp2 + 1;
    if (end - v != 8 || memcmp(v, "HTTP/", 5) != 0 || !isdigit((unsigned char)v[5]) ||
        v[6] != '.' || !isdigit((unsigned char)v[7]))
        return -400;
    if (v[5] != '1')
        return -505;
    r->method = p;
    r->method_len = (size_t)(sp1 - p);
    r->target = t;
    r->target_len = (size_t)(sp2 - t);
    r->minor = v[7] == '0' ? 0 : 1;
    return 0;
}

/* Case-insensitive: is [p, p+n) the word w? */
static int word_is(const char *p, size_t n, const char *w)
{
    return n == strlen(w) && strncasecmp(p, w, n) == 0;
}

/* One header field, without its line end: 0, or -status. */
static int header_field(const char *p, size_t n, struct req *r)
{
    const char *colon = memchr(p, ':', n);
    if (!colon || colon == p)
        return -400; /* also a folded line, which starts with a space */
    for (const char *q = p; q < colon; q++)
        if (!tchar((unsigned char)*q))
            return -400;
    size_t name_len = (size_t)(colon - p);
    const char *v = colon + 1, *end = p + n;
    for (const char *q = v; q < end; q++) {
        unsigned char c = (unsigned char)*q;
        if ((c < ' ' && c != '\t') || c == 0x7f)
            return -400;
    }
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    size_t vlen = (size_t)(end - v);

    if (word_is(p, name_len, "host")) {
        r->hosts++;
    } else if (word_is(p, name_len, "connection")) {
        const char *q = v;
        while (q < end) {
            const char *comma = memchr(q, ',', (size_t)(end - q));
            const char *e = comma ? comma : end;
            const char *a = q, *b = e;
            while (a < b && (*a == ' ' || *a == '\t'))
                a++;
            while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
                b--;
            if (word_is(a, (size_t)(b - a), "close"))
                r->close = 1;
            else if (word_is(a, (size_t)(b - a), "keep-alive"))
                r->keep_alive = 1;
            q = comma ? comma + 1 : end;
        }
    } else if (word_is(p, name_len, "content-length")) {
        if (vlen == 0 || vlen > 18)
            return -400;
        int64_t len = 0;
        for (size_t i = 0; i < vlen; i++) {
            if (!isdigit((unsigned char)v[i]))
                return -400;
            len = len * 10 + (v[i] - '0');
        }
        if (r->length >= 0 && r->length != len)
            return -400;
        r->length = len;
    } else if (word_is(p, name_len, "transfer-encoding")) {
        r->te = 1;
    }
    return 0;
}

/*
 * Parses the request head at the start of the n bytes at p.  Returns its
 * length, line ends and the empty line included (> 0); 0 if it is not
 * complete yet and may still become valid; or -status for a request to
 * refuse (400, 414, 431, 505).  Empty lines before a request line are
 * skipped (and counted in the length), lines may end with CRLF or LF.
 */
static int parse_head(const char *p, size_t n, struct req *r)
{
    memset(r, 0, sizeof *r);
    r->length = -1;
    size_t pos = 0;
    while (pos < n && (p[pos] == '\r' || p[pos] == '\n'))
        pos++;
    for (int line = 0;; line++) {
        const char *nl = memchr(p + pos, '\n', n - pos);
        if (!nl) {
            /* Refuse garbage as soon as its first bytes show it. */
            if (line == 0)
                for (size_t i = pos; i < n && p[i] != ' '; i++)
                    if (!tchar((unsigned char)p[i]))
                        return -400;
            if (n >= MAX_HEAD)
                return line == 0 ? -414 : -431;
            return 0;
        }
        size_t end = (size_t)(nl - p), len = end - pos;
        if (end >= MAX_HEAD)
            return line == 0 ? -414 : -431;
        if (len && p[end - 1] == '\r')
            len--;
        int rc;
        if (line == 0) {
            rc = request_line(p + pos, len, r);
        } else if (len == 0) {
            if (r->hosts > 1 || (r->minor == 1 && r->hosts == 0))
                return -400;
            r->keep = !r->close && (r->minor == 1 || r->keep_alive);
            return (int)end + 1;
        } else {
            rc = header_field(p + pos, len, r);
        }
        if (rc < 0)
            return rc;
        pos = end + 1;
    }
}

/* ------------------------------------------------------------ responses */

/* One connection's state. */
struct conn {
    int fd;
    size_t have;        /* bytes of requests in in[] */
    size_t outlen;      /* bytes of responses in out[] */
    int64_t head_start; /* when the first byte of the request in in[] came */
    long requests;
    char *fbuf;         /* FILE_CHUNK bytes, for files; allocated on demand */
    char in[MAX_HEAD];
    char out[OUT_CAP];
};

static const char *reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 501: return "Not Implemented";
    case 505: return "HTTP Version Not Supported";
    default:  return "Internal Server Error";
    }
}

/* The Connection field a response needs, if any. */
static const char *conn_field(const struct req *r)
{
    if (!r->keep)
        return "Connection: close\r\n";
    return r->minor == 0 ? "Connection: keep-alive\r\n" : "";
}

/* Writes what out[] holds: 0, or -1 if the client is gone or stuck. */
static int flush(struct conn *c)
{
    if (c->outlen == 0)
        return 0;
    ssize_t n = chan_write(c->fd, c->out, c->outlen, idle_ns);
    int ok = n == (ssize_t)c->outlen;
    c->outlen = 0;
    return ok ? 0 : -1;
}

/* Appends n bytes to out[], writing first if they do not fit; bytes that
 * would not fit even then are written at once.  0, or -1 as flush. */
static int put(struct conn *c, const void *p, size_t n)
{
    if (n > OUT_CAP - c->outlen && flush(c) != 0)
        return -1;
    if (n > OUT_CAP)
        return chan_write(c->fd, p, n, idle_ns) == (ssize_t)n ? 0 : -1;
    memcpy(c->out + c->outlen, p, n);
    c->outlen += n;
    return 0;
}

/* A short text response for status: 0, or -1 as flush. */
static int put_status(struct conn *c, int status, const struct req *r, int head)
{
    const char *text = reason(status);
    char b[512];
    int n = snprintf(b, sizeof b,
                     "HTTP/1.1 %d %s\r\n"
                     "Content-Type: text/plain\r\n"
                     "Content-Length: %zu\r\n"
                     "%s%s\r\n",
                     status, text, strlen(text) + 5,
                     status == 405 ? "Allow: GET, HEAD\r\n" : "", conn_field(r));
    if (n < 0 || (size_t)n >= sizeof b)
        return -1;
    if (!head)
        n += snprintf(b + n, sizeof b - (size_t)n, "%d %s\n", status, text);
    if ((size_t)n >= sizeof b)
        return -1;
    return put(c, b, (size_t)n);
}

/* ------------------------------------------------------------ files */

/* A file request, handed to the helper threads of chan_blocking. */
struct file_job {
    char *name;         /* the decoded path under the root, NUL-terminated */
    int fd;             /* out: the open file, or -1 */
    int err;            /* out: errno of what failed, or 0 */
    off_t size;         /* out: its size */
    char *buf;          /* FILE_CHUNK bytes */
    off_t off;          /* in: where to read */
    ssize_t got;        /* out: bytes read into buf, or -1 */
};

/* Opens job->name under the root one segment at a time, never following
 * a symbolic link, and checks that it is a regular file.  Runs on a helper
 * thread: it may block in the file system. */
static void file_open(void *arg)
{
    struct file_job *j = arg;
    int dir = root_fd;
    char *seg = j->name;
    j->fd = -1;
    j->err = 0;
    for (;;) {
        char *slash = strchr(seg, '/');
        if (slash)
            *slash = '\0';
        /* O_NONBLOCK: a FIFO under the root must not hang the helper. */
        int fd = openat(dir, seg, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK |
                                      (slash ? O_DIRECTORY : 0));
        int e = errno;
        if (slash)
            *slash = '/';
        if (dir != root_fd)
            close(dir);
        if (fd < 0) {
            j->err = e;
            return;
        }
        if (!slash) {
            struct stat st;
            if (fstat(fd, &st) != 0) {
                j->err = errno;
                close(fd);
                return;
            }
            if (!S_ISREG(st.st_mode)) {
                j->err = ENOENT; /* a directory, a FIFO, a device: 404 */
                close(fd);
                return;
            }
            j->fd = fd;
            j->size = st.st_size;
            return;
        }
        dir = fd;
        seg = slash + 1;
    }
}

/* Reads the next piece of the file at job->off. */
static void file_read(void *arg)
{
    struct file_job *j = arg;
    size_t want = FILE_CHUNK;
    if (j->size - j->off < (off_t)want)
        want = (size_t)(j->size - j->off);
    ssize_t n;
    do
        n = pread(j->fd, j->buf, want, j->off);
    while (n < 0 && errno == EINTR);
    j->got = n;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Decodes the n bytes of a path at p into name (room for n + 1): 0, or
 * -status (400 for a bad escape or a NUL, 403 for "..", 404 for an empty
 * or "." segment). */
static int decode_name(const char *p, size_t n, char *name)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (ch == '%') {
            int hi = i + 2 < n ? hexval(p[i + 1]) : -1;
            int lo = hi >= 0 ? hexval(p[i + 2]) : -1;
            if (lo < 0)
                return -400;
            ch = (char)(hi * 16 + lo);
            i += 2;
            if (ch == '\0')
                return -400;
        }
        name[k++] = ch;
    }
    name[k] = '\0';
    int status = 0;
    for (char *seg = name;;) {
        char *slash = strchr(seg, '/');
        size_t len = slash ? (size_t)(slash - seg) : strlen(seg);
        if (len == 2 && seg[0] == '.' && seg[1] == '.')
            return -403;
        if (len == 0 || (len == 1 && seg[0] == '.'))
            status = -404; /* but a later ".." is still 403 */
        if (!slash)
            break;
        seg = slash + 1;
    }
    return status;
}

static const char *content_type(const char *name)
{
    static const char *const types[][2] = {
        { ".txt", "text/plain" },  { ".html", "text/html" },
        { ".htm", "text/html" },   { ".css", "text/css" },
        { ".js", "text/javascript" }, { ".json", "application/json" },
        { ".png", "image/png" },   { ".jpg", "image/jpeg" },
        { ".jpeg", "image/jpeg" }, { ".gif", "image/gif" },
        { ".svg", "image/svg+xml" },
    };
    const char *dot = strrchr(name, '.');
    if (dot && !strchr(dot, '/'))
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (strcasecmp(dot, types[i][0]) == 0)
                return types[i][1];
    return "application/octet-stream";
}

/* GET or HEAD of /files/NAME (path: NAME, still encoded).  0, or -1 to
 * close the connection (a write failed, or the file did not give the
 * bytes its size promised: the response cannot be completed). */
static int serve_file(struct conn *c, const struct req *r, const char *path,
                      size_t len, int head)
{
    char name[MAX_HEAD + 1];
    int rc = root_fd < 0 ? -404 : decode_name(path, len, name);
    if (rc < 0)
        return put_status(c, -rc, r, head);
    if (!c->fbuf && !(c->fbuf = malloc(FILE_CHUNK)))
        return put_status(c, 500, r, head);
    struct file_job j = { .name = name, .buf = c->fbuf };
    if (chan_blocking(file_open, &j) != 0)
        return put_status(c, 500, r, head);
    if (j.fd < 0) {
        int status = j.err == EACCES || j.err == EPERM ? 403
                   : j.err == ENOENT || j.err == ENOTDIR || j.err == ELOOP ||
                     j.err == ENAMETOOLONG ? 404 : 500;
        return put_status(c, status, r, head);
    }
    char b[512];
    int n = snprintf(b, sizeof b,
                     "HTTP/1.1 200 OK\r\n"
                     "Content-Type: %s\r\n"
                     "Content-Length: %jd\r\n"
                     "%s\r\n",
                     content_type(name), (intmax_t)j.size, conn_field(r));
    rc = n > 0 && (size_t)n < sizeof b ? put(c, b, (size_t)n) : -1;
    for (j.off = 0; rc == 0 && !head && j.off < j.size; j.off += j.got) {
        if (chan_blocking(file_read, &j) != 0 || j.got <= 0)
            rc = -1; /* the file shrank, or cannot be read: cut short */
        else
            rc = put(c, j.buf, (size_t)j.got);
    }
    close(j.fd); /* a regular file that was only read: does not block */
    return rc;
}

/* Answers one parsed request: 0, or -1 to close the connection now. */
static int respond(struct conn *c, struct req *r)
{
    int head = is_method(r, "HEAD");
    if (!head && !is_method(r, "GET")) {
        static const char *const known[] = { "POST", "PUT", "DELETE", "PATCH",
                                             "OPTIONS", "TRACE", "CONNECT" };
        int status = 501;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            if (is_method(r, known[i]))
                status = 405;
        if (r->te || r->length > 0)
            r->keep = 0; /* its body is not read: the rest is unknown */
        return put_status(c, status, r, 0);
    }
    if (r->te || r->length > 0) {
        r->keep = 0;
        return put_status(c, r->te ? 501 : 413, r, head);
    }
    const char *t = r->target, *end = t + r->target_len;
    if (end - t > 7 && strncasecmp(t, "http://", 7) == 0) {
        /* absolute form: the path starts after the authority */
        const char *slash = memchr(t + 7, '/', (size_t)(end - t - 7));
        t = slash ? slash : "/";
        if (!slash)
            end = t + 1;
    }
    if (*t != '/') {
        r->keep = 0;
        return put_status(c, 400, r, head);
    }
    const char *q = memchr(t, '?', (size_t)(end - t));
    if (q)
        end = q;
    if (end - t == 1) {
        if (r->keep && r->minor == 1)
            return put(c, page, head ? sizeof page - 1 - strlen(PAGE_BODY)
                                     : sizeof page - 1);
        char b[256];
        int n = snprintf(b, sizeof b, "%s%s\r\n%s", PAGE_HEAD, conn_field(r),
                         head ? "" : PAGE_BODY);
        return n > 0 && (size_t)n < sizeof b ? put(c, b, (size_t)n) : -1;
    }
    if (end - t > 7 && memcmp(t, "/files/", 7) == 0)
        return serve_file(c, r, t + 7, (size_t)(end - t - 7), head);
    return put_status(c, 404, r, head);
}

/* ------------------------------------------------------------ connections */

/* Ends a connection after a response that said so: no more sending, and
 * what the client still sends is read and dropped (up to LINGER_MAX
 * bytes, for up to linger_ns), so that the close does not reset the
 * connection before the client has read the response. */
static void linger_close(struct conn *c)
{
    if (shutdown(c->fd, SHUT_WR) != 0)
        return;
    int64_t end = now_ns() + linger_ns;
    size_t total = 0;
    while (total < LINGER_MAX) {
        int64_t left = end - now_ns();
        if (left <= 0)
            break;
        ssize_t n = chan_read(c->fd, c->in, sizeof c->in, left);
        if (n <= 0)
            break;
        total += (size_t)n;
    }
}

/* Answers every complete request in in[] and keeps the rest.  Returns 0
 * to go on reading, 1 if a response ended the connection (linger and
 * close), -1 to close at once. */
static int answer(struct conn *c)
{
    size_t off = 0;
    int rc = 0;
    while (off < c->have) {
        struct req r;
        int n = parse_head(c->in + off, c->have - off, &r);
        if (n == 0)
            break;
        if (n < 0) {
            atomic_fetch_add(&bad_requests, 1);
            r.keep = 0;
            rc = put_status(c, -n, &r, 0) == 0 ? 1 : -1;
            break;
        }
        off += (size_t)n;
        c->requests++;
        if (atomic_load_explicit(&stopping, memory_order_relaxed))
            r.keep = 0;
        if (respond(c, &r) != 0) {
            rc = -1;
            break;
        }
        if (!r.keep) {
            rc = 1;
            break;
        }
    }
    if (rc < 0 || flush(c) != 0)
        return -1;
    if (rc != 0)
        return rc;
    if (off > 0) {
        memmove(c->in, c->in + off, c->have - off);
        c->have -= off;
        if (c->have > 0)
            c->head_start = now_ns(); /* the next request has begun */
    }
    return 0;
}

/* Sends 408 for the request that did not arrive in time. */
static void request_timeout(struct conn *c)
{
    struct req r = { .keep = 0 };
    atomic_fetch_add(&timed_out, 1);
    if (put_status(c, 408, &r, 0) == 0 && flush(c) == 0)
        linger_close(c);
}

/* n more bytes came into in[]. */
static void got(struct conn *c, size_t n)
{
    if (c->have == 0)
        c->head_start = now_ns(); /* the first bytes of a request */
    c->have += n;
}

static void serve(void *arg)
{
    int fd = (int)(intptr_t)arg;
    struct conn *c = malloc(sizeof *c);
    if (!c) {
        chan_fd_close(fd);
        chan_wg_done(wg);
        return;
    }
    c->fd = fd;
    c->have = c->outlen = 0;
    c->requests = 0;
    c->fbuf = NULL;
    /* Whether to try a read before waiting: yes for a new connection,
     * whose first request is usually there already, and after the wait
     * said so; no after a read, since a client that sent a request
     * usually waits for the response before it sends more (the try
     * would cost a system call that finds nothing, and the select polls
     * the socket before it parks anyway). */
    int try_read = 1;
    for (;;) {
        if (c->have > 0) {
            int rc = answer(c);
            if (rc > 0)
                linger_close(c);
            if (rc != 0)
                break;
        }
        if (atomic_load_explicit(&stopping, memory_order_relaxed))
            break;
        ssize_t n;
        if (try_read) {
            try_read = 0;
            n = chan_read(fd, c->in + c->have, sizeof c->in - c->have, 0);
            if (n > 0) {
                got(c, (size_t)n);
                continue;
            }
            if (n != -EAGAIN)
                break; /* end of file, or an error (-ECONNRESET, ...) */
        }
        /* Wait for the socket, the quit channel or the timeout, whichever
         * comes first. */
        int64_t wait = idle_ns;
        if (c->have > 0) {
            wait = c->head_start + header_ns - now_ns();
            if (wait <= 0) {
                request_timeout(c);
                break;
            }
        }
        chan_case_t cs[2] = { CHAN_FD_CASE(fd, POLLIN),
                              CHAN_RECV_CASE(quit, NULL) };
        int k = chan_select(cs, 2, wait);
        if (k == 0 && cs[0].result > 0) {
            try_read = 1;
            continue;
        }
        if (k == -ETIMEDOUT) {
            /* On an overloaded machine the timeout may win the race with
             * a request that did arrive: do not drop that one. */
            n = chan_read(fd, c->in + c->have, sizeof c->in - c->have, 0);
            if (n > 0) {
                got(c, (size_t)n);
                continue; /* still incomplete: 408 just above */
            }
            if (c->have > 0)
                request_timeout(c);
            else
                atomic_fetch_add(&timed_out, 1);
        }
        break; /* timed out, quit closed, or the socket failed */
    }
    atomic_fetch_add(&requests, c->requests);
    chan_fd_close(fd);
    free(c->fbuf);
    free(c);
    chan_wg_done(wg);
}

/* Accepts until the listener is closed (chan_accept then fails with
 * -EBADF).  Out of descriptors or memory, it waits a little (or until
 * quit) and tries again; the pending connections wait in the backlog. */
static void acceptor(void *arg)
{
    int l = (int)(intptr_t)arg;
    for (;;) {
        int fd = chan_accept(l, NULL, NULL, CHAN_FOREVER);
        if (fd == -EBADF)
            break;
        if (fd == -EMFILE || fd == -ENFILE || fd == -ENOBUFS || fd == -ENOMEM) {
            if (chan_timedrecv(quit, NULL, 10 * MS) == -EPIPE)
                break;
            continue;
        }
        if (fd < 0)
            continue; /* -ECONNABORTED and the like: that client is gone */
        int one = 1;
        if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0) {
            /* not fatal: responses are written whole anyway */
        }
        atomic_fetch_add(&connections, 1);
        chan_wg_add(wg, 1);
        if (chan_go(NULL, serve, (void *)(intptr_t)fd) != 0) {
            chan_fd_close(fd);
            chan_wg_done(wg);
        }
    }
    chan_wg_done(wg);
}

/* Closes *arg (a channel) once standard input reaches its end (--eof).
 * Waits with chan_fd_wait, which leaves the descriptor's mode alone. */
static void watch_stdin(void *arg)
{
    char buf[256];
    while (chan_fd_wait(0, POLLIN, CHAN_FOREVER) > 0 &&
           read(0, buf, sizeof buf) > 0)
        ;
    chan_close(arg);
}

/* ------------------------------------------------------------ main */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: httpd_tasks [--port P] [--root DIR] [--workers N]\n"
            "                   [--idle-ms MS] [--header-ms MS] [--eof]\n"
            "  --port P        listen on 127.0.0.1:P; 0 (default) picks a port;\n"
            "                  the first line printed is \"port N\"\n"
            "  --root DIR      serve GET /files/NAME from DIR (default: none, 404)\n"
            "  --workers N     scheduler worker threads (default: online CPUs)\n"
            "  --idle-ms MS    close a connection idle between requests (60000)\n"
            "  --header-ms MS  408 for a request head not complete in time (10000)\n"
            "  --eof           also shut down at the end of standard input\n"
            "GET / is a fixed page.  SIGINT or SIGTERM shut it down gracefully.\n");
}

/* A whole decimal number in [lo, hi] from s, or -1. */
static long number(const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    return v;
}

int main(int argc, char **argv)
{
    long port = 0, workers = 0;
    const char *root = NULL;
    int eof_quits = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--eof") == 0) {
            eof_quits = 1;
            continue;
        }
        if (i + 1 >= argc) {
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        long ms = 0;
        if (strcmp(a, "--port") == 0)
            port = number(v, 0, 65535);
        else if (strcmp(a, "--workers") == 0)
            workers = number(v, 1, 1024);
        else if (strcmp(a, "--root") == 0)
            root = v;
        else if (strcmp(a, "--idle-ms") == 0 && (ms = number(v, 1, INT_MAX)) > 0)
            idle_ns = ms * MS;
        else if (strcmp(a, "--header-ms") == 0 && (ms = number(v, 1, INT_MAX)) > 0)
            header_ns = ms * MS;
        else
            ms = -1;
        if (port < 0 || workers < 0 || ms < 0) {
            usage(stderr);
            return 2;
        }
    }
    if (root) {
        root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (root_fd < 0) {
            fprintf(stderr, "httpd_tasks: %s: %s\n", root, strerror(errno));
            return 2;
        }
    }

    /* chan_write never raises SIGPIPE; this is for the final report on
     * standard output, whose reader (a script) may be gone by then. */
    if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
        perror("httpd_tasks: SIGPIPE (going on)");

    /* The signals first, so that none arrives before it is watched. */
    chan_t *sig = chan_make(sizeof(int), 2);
    if (!sig || chan_signal_notify(sig, SIGINT) != 0 ||
        chan_signal_notify(sig, SIGTERM) != 0) {
        fprintf(stderr, "httpd_tasks: cannot watch signals\n");
        return 1;
    }

    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = { .sin_family = AF_INET };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    socklen_t alen = sizeof a;
    int one = 1;
    if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 4096) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &alen) != 0) {
        perror("httpd_tasks: listen");
        return 1;
    }
    printf("port %d\n", ntohs(a.sin_port));
    fflush(stdout);

    /* Every connection is a descriptor: allow as many as the hard limit. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
            perror("httpd_tasks: setrlimit (going on)");
    }

    chan_sched_opts_t o = { .threads = (unsigned)workers };
    chan_sched_t *s = chan_sched_new(&o);
    wg = chan_wg_new();
    quit = chan_make(0, 0);
    chan_t *eof = chan_make(0, 0); /* closed at the end of stdin (--eof) */
    if (!s || !wg || !quit || !eof) {
        fprintf(stderr, "httpd_tasks: cannot start the scheduler\n");
        return 1;
    }
    chan_wg_add(wg, 1);
    if (chan_go(s, acceptor, (void *)(intptr_t)l) != 0 ||
        (eof_quits && chan_go(s, watch_stdin, eof) != 0)) {
        fprintf(stderr, "httpd_tasks: cannot start a task\n");
        return 1;
    }

    /* Wait for the signal, waking now and then: a build with
     * ThreadSanitizer runs a signal handler only once the thread it
     * interrupted leaves its wait, and this thread may be that one. */
    int signo = 0, k;
    do {
        chan_case_t c[2] = { CHAN_RECV_CASE(sig, &signo),
                             CHAN_RECV_CASE(eof, NULL) };
        k = chan_select(c, 2, 100 * MS);
    } while (k == -ETIMEDOUT);
    if (k == 0)
        printf("received %s: shutting down\n",
               signo == SIGINT ? "SIGINT" : "SIGTERM");
    else
        printf("end of input: shutting down\n");
    fflush(stdout);
    atomic_store(&stopping, 1);
    chan_close(quit);           /* wakes the connections waiting for requests */
    chan_fd_close(l);           /* wakes the acceptor with -EBADF */
    chan_wg_wait(wg);           /* every connection finished */
    printf("served %ld connections, %ld requests, %ld timed out, %ld bad\n",
           atomic_load(&connections), atomic_load(&requests),
           atomic_load(&timed_out), atomic_load(&bad_requests));
    printf("bye\n");
    if (eof_quits)
        chan_fd_close(0);       /* wakes watch_stdin, if it still waits */
    chan_sched_free(s);
    chan_wg_free(wg);
    chan_signal_stop(sig);
    chan_release(sig);
    chan_release(eof);
    chan_release(quit);
    if (root_fd >= 0)
        close(root_fd);
    return 0;
}
