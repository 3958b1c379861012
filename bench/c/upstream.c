/* The benchmark's fast echo upstream: plain C on libnghttp2, one thread, epoll.
 *
 * Why C rather than Node's grpc-js (bench/node/upstream.js, still selectable
 * with --upstream node): grpc-js spends ~150-200 us of CPU per unary call. On
 * a 2-CPU machine the workers case shares both CPUs between the bridge, the
 * upstream and wrk, so an expensive upstream takes the cores the workers are
 * meant to scale onto; and in the streaming case grpc-js, not the proxy, was
 * what limited messages/s. This one costs a few microseconds per call.
 *
 * It speaks just enough gRPC for benchpb.v1.Bench, without a protobuf library:
 *   EchoOrder, EchoPing, GetPing  the request's bytes (gRPC frames included) go back;
 *   StreamPings          StreamRequest{count} -> count x Ping{id:"stream",seq:1};
 *   ChatPings            the request stream's bytes are echoed as they come;
 *   anything else        UNIMPLEMENTED.
 * Compression is never negotiated: it accepts only uncompressed frames, which
 * is what every proxy here sends without a grpc-encoding header.
 *
 *   cc -O2 -o upstream bench/c/upstream.c -lnghttp2 && ./upstream PORT
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <fcntl.h>

enum kind { UNKNOWN, ECHO, PINGS, CHAT };

/* Ping{id: "stream", seq: 1} in one uncompressed gRPC frame. */
static const uint8_t PING_FRAME[] = {0, 0, 0, 0, 10, 0x0a, 6, 's', 't', 'r', 'e', 'a', 'm', 0x10, 1};
#define PING_LEN sizeof(PING_FRAME)

typedef struct {
    uint8_t *data;
    size_t len, off, cap;
} buffer;

typedef struct {
    enum kind kind;
    buffer in;           /* unary request body, until END_STREAM */
    buffer out;          /* bytes waiting to go out as DATA */
    uint64_t ping_bytes; /* StreamPings: bytes of Ping frames still to send */
    uint64_t ping_pos;   /* StreamPings: offset into the repeated frame */
    int responded;       /* response HEADERS submitted */
    int in_done;         /* the request stream ended */
    int deferred;        /* the data provider is parked waiting for bytes */
} stream;

typedef struct {
    int fd;
    nghttp2_session *session;
    buffer wbuf;
    int want_out; /* EPOLLOUT is armed */
} conn;

static int epfd;

static void buf_append(buffer *b, const uint8_t *data, size_t len) {
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len) cap *= 2;
        b->data = realloc(b->data, cap);
        if (!b->data) abort();
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

#define NV(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, \
                  NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE}

static nghttp2_nv RESPONSE_HEADERS[] = {NV(":status", "200"), NV("content-type", "application/grpc")};
static nghttp2_nv OK_TRAILERS[] = {NV("grpc-status", "0")};
static nghttp2_nv UNIMPLEMENTED[] = {NV(":status", "200"), NV("content-type", "application/grpc"),
                                     NV("grpc-status", "12"), NV("grpc-message", "unknown method")};

static void finish(nghttp2_session *session, int32_t id, uint32_t *flags) {
    *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
    nghttp2_submit_trailer(session, id, OK_TRAILERS, 1);
}

static ssize_t read_body(nghttp2_session *session, int32_t id, uint8_t *out, size_t length,
                         uint32_t *flags, nghttp2_data_source *source, void *user_data) {
    (void)user_data;
    stream *s = source->ptr;
    if (s->kind == PINGS) {
        size_t n = length < s->ping_bytes ? length : (size_t)s->ping_bytes;
        for (size_t done = 0; done < n;) {
            size_t chunk = PING_LEN - s->ping_pos;
            if (chunk > n - done) chunk = n - done;
            memcpy(out + done, PING_FRAME + s->ping_pos, chunk);
            done += chunk;
            s->ping_pos = (s->ping_pos + chunk) % PING_LEN;
        }
        s->ping_bytes -= n;
        if (s->ping_bytes == 0) finish(session, id, flags);
        return (ssize_t)n;
    }
    size_t avail = s->out.len - s->out.off;
    if (avail == 0 && !s->in_done) {
        s->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = length < avail ? length : avail;
    memcpy(out, s->out.data + s->out.off, n);
    s->out.off += n;
    if (s->out.off == s->out.len) {
        s->out.off = s->out.len = 0;
        if (s->in_done) finish(session, id, flags);
    }
    return (ssize_t)n;
}

static void respond(nghttp2_session *session, int32_t id, stream *s) {
    nghttp2_data_provider provider = {.source.ptr = s, .read_callback = read_body};
    s->responded = 1;
    nghttp2_submit_response(session, id, RESPONSE_HEADERS, 2, &provider);
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
    (void)user_data;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        stream *s = calloc(1, sizeof(stream));
        if (!s) abort();
        nghttp2_session_set_stream_user_data(session, frame->hd.stream_id, s);
    }
    return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data) {
    (void)flags, (void)user_data;
    stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (!s || namelen != 5 || memcmp(name, ":path", 5) != 0) return 0;
    static const struct { const char *path; enum kind kind; } methods[] = {
        {"/benchpb.v1.Bench/EchoOrder", ECHO},
        {"/benchpb.v1.Bench/EchoPing", ECHO},
        {"/benchpb.v1.Bench/GetPing", ECHO},
        {"/benchpb.v1.Bench/StreamPings", PINGS},
        {"/benchpb.v1.Bench/ChatPings", CHAT},
    };
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        if (strlen(methods[i].path) == valuelen && memcmp(methods[i].path, value, valuelen) == 0) {
            s->kind = methods[i].kind;
        }
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user_data) {
    (void)flags, (void)user_data;
    stream *s = nghttp2_session_get_stream_user_data(session, id);
    if (!s) return 0;
    if (s->kind == CHAT) {
        buf_append(&s->out, data, len);
        if (s->deferred) {
            s->deferred = 0;
            nghttp2_session_resume_data(session, id);
        }
    } else {
        buf_append(&s->in, data, len);
    }
    return 0;
}

/* StreamRequest{count}: field 1, varint, after the 5-byte gRPC frame header. */
static uint64_t read_count(const buffer *in) {
    uint64_t count = 0;
    size_t i = 5;
    if (in->len > i && in->data[i] == 0x08) {
        int shift = 0;
        for (i++; i < in->len && shift < 64; i++, shift += 7) {
            count |= (uint64_t)(in->data[i] & 0x7f) << shift;
            if (!(in->data[i] & 0x80)) break;
        }
    }
    return count;
}

static void request_ended(nghttp2_session *session, int32_t id, stream *s) {
    s->in_done = 1;
    switch (s->kind) {
    case ECHO: {
        buffer tmp = s->out;
        s->out = s->in;
        s->in = tmp;
        respond(session, id, s);
        break;
    }
    case PINGS:
        s->ping_bytes = read_count(&s->in) * PING_LEN;
        respond(session, id, s);
        break;
    case CHAT:
        if (!s->responded) respond(session, id, s);
        if (s->deferred) {
            s->deferred = 0;
            nghttp2_session_resume_data(session, id);
        }
        break;
    default:
        nghttp2_submit_response(session, id, UNIMPLEMENTED, 4, NULL);
    }
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data) {
    (void)user_data;
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) return 0;
    int32_t id = frame->hd.stream_id;
    stream *s = nghttp2_session_get_stream_user_data(session, id);
    if (!s) return 0;
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        request_ended(session, id, s);
    } else if (frame->hd.type == NGHTTP2_HEADERS && s->kind == CHAT && !s->responded) {
        respond(session, id, s); /* bidi: answer before the request stream ends */
    }
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t id, uint32_t error_code,
                           void *user_data) {
    (void)error_code, (void)user_data;
    stream *s = nghttp2_session_get_stream_user_data(session, id);
    if (s) {
        free(s->in.data);
        free(s->out.data);
        free(s);
        nghttp2_session_set_stream_user_data(session, id, NULL);
    }
    return 0;
}

static void set_events(conn *c, int want_out) {
    if (c->want_out == want_out) return;
    struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = want_out;
}

static void close_conn(conn *c) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    nghttp2_session_del(c->session);
    free(c->wbuf.data);
    free(c);
}

/* Gathers everything nghttp2 has to send into one buffer and writes it in one
 * call, so a unary response (HEADERS, DATA, trailers) is one syscall. Returns
 * -1 when the connection is done or broken. */
static int flush(conn *c) {
    for (;;) {
        while (c->wbuf.len - c->wbuf.off < 65536) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(c->session, &data);
            if (n < 0) return -1;
            if (n == 0) break;
            if (c->wbuf.off == c->wbuf.len) c->wbuf.off = c->wbuf.len = 0;
            buf_append(&c->wbuf, data, (size_t)n);
        }
        size_t pending = c->wbuf.len - c->wbuf.off;
        if (pending == 0) break;
        ssize_t w = write(c->fd, c->wbuf.data + c->wbuf.off, pending);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                set_events(c, 1);
                return 0;
            }
            if (errno == EINTR) continue;
            return -1;
        }
        c->wbuf.off += (size_t)w;
        if ((size_t)w < pending) {
            set_events(c, 1);
            return 0;
        }
    }
    set_events(c, 0);
    if (!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session)) return -1;
    return 0;
}

static int on_readable(conn *c) {
    static uint8_t buf[65536];
    for (;;) {
        ssize_t n = read(c->fd, buf, sizeof(buf));
        if (n == 0) return -1;
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) break;
            if (errno == EINTR) continue;
            return -1;
        }
        if (nghttp2_session_mem_recv(c->session, buf, (size_t)n) < 0) return -1;
        if ((size_t)n < sizeof(buf)) break;
    }
    return flush(c);
}

static nghttp2_session_callbacks *callbacks(void) {
    nghttp2_session_callbacks *cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    return cbs;
}

static void accept_all(int lfd, nghttp2_session_callbacks *cbs) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        conn *c = calloc(1, sizeof(conn));
        if (!c) abort();
        c->fd = fd;
        nghttp2_session_server_new(&c->session, cbs, c);
        nghttp2_settings_entry settings[] = {
            {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1000},
            {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20},
        };
        nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, settings, 2);
        nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, 16 << 20);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
        if (flush(c) < 0) close_conn(c);
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s PORT\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(lfd, 1024) < 0) {
        perror("listen");
        return 1;
    }
    socklen_t len = sizeof(addr);
    getsockname(lfd, (struct sockaddr *)&addr, &len);
    printf("upstream listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
    fflush(stdout);

    nghttp2_session_callbacks *cbs = callbacks();
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
    struct epoll_event events[64];
    for (;;) {
        int n = epoll_wait(epfd, events, 64, -1);
        for (int i = 0; i < n; i++) {
            conn *c = events[i].data.ptr;
            if (c == NULL) {
                accept_all(lfd, cbs);
                continue;
            }
            int rc = 0;
            if (events[i].events & (EPOLLERR | EPOLLHUP)) rc = -1;
            else if (events[i].events & EPOLLIN) rc = on_readable(c);
            else if (events[i].events & EPOLLOUT) rc = flush(c);
            if (rc < 0) close_conn(c);
        }
    }
}
