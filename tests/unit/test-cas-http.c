/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-cas-http.c -- the CVM REST transport against the CAS simulator
 * (build/vbak-cvm-sim, started per test on a free port): concurrent
 * requests on one loop with the Total header, XML and JSON, a second round
 * on the kept connections and handles, Digest with a wrong password (401 -> VB_E_AUTH), a 409 with
 * Error-Code 1001 in UTF-8 and in GBK, a closed port, a silent server
 * (timeout), HTTPS with a self-signed certificate (refused by default,
 * accepted with the insecure option or the CA file), and closing with
 * requests in flight. Skipped when the simulator is not built.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cas/http.h"
#include "daemon/util.h"
#include "tests/unit/test.h"

#define PASSWORD "s3cret-pw"

typedef struct sim {
        pid_t pid;
        int port, https_port;
        char url[64], https_url[64];
} sim;

/* ---- helpers ------------------------------------------------------------ */

static int free_port(void)
{
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sa);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)));
        ASSERT_OK(getsockname(fd, (struct sockaddr *)&sa, &len));
        close(fd);
        return ntohs(sa.sin_port);
}

/* The build directory holds test-unit (build/ or build/asan/); the simulator
 * is beside it or one level up, the sources above that. */
static bool find_paths(char sim_path[PATH_MAX], char topology[PATH_MAX])
{
        char exe[PATH_MAX], dir[PATH_MAX - 64];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        bool have_sim = false, have_topo = false;

        if (n <= 0)
                return false;
        exe[n] = 0;
        snprintf(dir, sizeof(dir), "%s", dirname(exe));
        for (int up = 0; up < 3 && (!have_sim || !have_topo); up++) {
                if (!have_sim) {
                        snprintf(sim_path, PATH_MAX, "%s/vbak-cvm-sim", dir);
                        have_sim = access(sim_path, X_OK) == 0;
                }
                if (!have_topo) {
                        snprintf(topology, PATH_MAX, "%s/../tests/sim/topology-default.json", dir);
                        have_topo = access(topology, R_OK) == 0;
                }
                strncat(dir, "/..", sizeof(dir) - strlen(dir) - 1);
        }
        return have_sim && have_topo;
}

static bool file_contains(const char *path, const char *s)
{
        char buf[4096];
        FILE *f = fopen(path, "re");
        size_t n;

        if (!f)
                return false;
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = 0;
        return strstr(buf, s) != NULL;
}

/* The default topology with every VM shut off, as topology.json: the HTTP
 * side is all this test needs, and no QEMU is started. */
static void shut_off_topology(const char *path)
{
        json_t *t = json_load_file(path, 0, NULL), *pool, *cluster, *host, *vm;
        size_t i, j, k, l;
        int n = 0;

        ASSERT_TRUE(t);
        json_array_foreach(json_object_get(t, "hostPools"), i, pool)
        {
                json_t *hosts = json_array();

                json_array_foreach(json_object_get(pool, "clusters"), j, cluster)
                        json_array_extend(hosts, json_object_get(cluster, "hosts"));
                json_array_extend(hosts, json_object_get(pool, "hosts"));
                json_array_foreach(hosts, k, host)
                {
                        json_array_foreach(json_object_get(host, "vms"), l, vm)
                        {
                                ASSERT_OK(json_object_set_new(vm, "status", json_string("shutOff")));
                                n++;
                        }
                }
                json_decref(hosts);
        }
        ASSERT_EQ(n, 6);
        ASSERT_OK(json_dump_file(t, "topology.json", 0));
        json_decref(t);
}

/* Starts the simulator (HTTP, and HTTPS when cert is set) with extra
 * arguments; skips the test when it is not built. */
static void sim_start(sim *s, const char *cert, const char *key, const char *extra1, const char *extra2)
{
        char sim_path[PATH_MAX], topology[PATH_MAX], http[64], https[64], want[128];
        const char *argv[24];
        int argc = 0;

        if (!find_paths(sim_path, topology)) {
                fprintf(stderr, "vbak-cvm-sim or its topology not found: skipped\n");
                exit(EXIT_TEST_SKIP);
        }
        shut_off_topology(topology);
        FILE *f = fopen("password", "we");
        ASSERT_TRUE(f);
        fputs(PASSWORD "\n", f);
        fclose(f);

        s->port = free_port();
        snprintf(http, sizeof(http), "127.0.0.1:%d", s->port);
        snprintf(s->url, sizeof(s->url), "http://127.0.0.1:%d", s->port);
        argv[argc++] = sim_path;
        argv[argc++] = "serve";
        argv[argc++] = "--topology";
        argv[argc++] = "topology.json";
        argv[argc++] = "--http";
        argv[argc++] = http;
        argv[argc++] = "--user";
        argv[argc++] = "admin";
        argv[argc++] = "--password-file";
        argv[argc++] = "password";
        argv[argc++] = "--state-dir";
        argv[argc++] = test_tmpdir();
        argv[argc++] = "--cvd-port"; /* no disk service: nothing here needs it */
        argv[argc++] = "0";
        if (cert) {
                s->https_port = free_port();
                snprintf(https, sizeof(https), "127.0.0.1:%d", s->https_port);
                snprintf(s->https_url, sizeof(s->https_url), "https://127.0.0.1:%d", s->https_port);
                argv[argc++] = "--https";
                argv[argc++] = https;
                argv[argc++] = "--cert";
                argv[argc++] = cert;
                argv[argc++] = "--key";
                argv[argc++] = key;
        }
        if (extra1)
                argv[argc++] = extra1;
        if (extra2)
                argv[argc++] = extra2;
        argv[argc] = NULL;

        s->pid = fork();
        ASSERT_TRUE(s->pid >= 0);
        if (s->pid == 0) {
                int out = open("sim.out", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                int err = open("sim.err", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

                /* Never outlive the test, never hold the runner's output open. */
                prctl(PR_SET_PDEATHSIG, SIGKILL);
                dup2(out, 1);
                dup2(err, 2);
                execv(sim_path, (char **)argv);
                _exit(127);
        }
        snprintf(want, sizeof(want), "listening on %s", cert ? s->https_url : s->url);
        for (int i = 0; i < 500; i++) { /* up to 5 s */
                if (file_contains("sim.out", want))
                        return;
                if (waitpid(s->pid, NULL, WNOHANG) == s->pid) {
                        s->pid = 0;
                        TEST_FAIL_("the simulator exited");
                }
                usleep(10000);
        }
        TEST_FAIL_("the simulator did not start");
}

static void sim_stop(sim *s)
{
        if (s->pid > 0) {
                kill(s->pid, SIGKILL);
                waitpid(s->pid, NULL, 0);
                s->pid = 0;
        }
}

/* One completed request, copied out of the callback. */
typedef struct result {
        bool done;
        int calls;
        cas_http_response r;
        char *body, *error_code, *error_message, *total_raw, *content_type, *charset, *curl_error;
        vb_error e;
        char msg[1024];
} result;

static char *dup_or_null(const char *s)
{
        return s ? strdup(s) : NULL;
}

static void on_done(void *userdata, const cas_http_response *r)
{
        result *res = userdata;

        res->calls++;
        res->done = true;
        res->r = *r;
        res->body = malloc(r->body_len + 1);
        ASSERT_TRUE(res->body);
        memcpy(res->body, r->body, r->body_len + 1);
        res->error_code = dup_or_null(r->error_code);
        res->error_message = dup_or_null(r->error_message);
        res->total_raw = dup_or_null(r->total_raw);
        res->content_type = dup_or_null(r->content_type);
        res->charset = dup_or_null(r->charset);
        res->curl_error = dup_or_null(r->curl_error);
        res->e = cas_http_error(r, res->msg, sizeof(res->msg));
        /* The response is borrowed: do not keep its pointers. */
        res->r.body = res->body;
        res->r.cvm = res->r.method = res->r.path = NULL;
}

static void result_free(result *res)
{
        free(res->body);
        free(res->error_code);
        free(res->error_message);
        free(res->total_raw);
        free(res->content_type);
        free(res->charset);
        free(res->curl_error);
        memset(res, 0, sizeof(*res));
}

static void on_closed(void *userdata)
{
        (*(int *)userdata)++;
}

static cas_http *client(uv_loop_t *loop, const char *url, const char *password)
{
        cas_http_options o = { .url = url, .user = "admin", .password = password, .timeout_ms = 10000 };
        cas_http *c = NULL;

        ASSERT_OK(cas_http_new(loop, &o, &c));
        return c;
}

static bool all_done(const result *res, size_t n)
{
        for (size_t i = 0; i < n; i++)
                if (!res[i].done)
                        return false;
        return true;
}

/* Runs the loop until every result is done. */
static void wait_all(uv_loop_t *loop, result *res, size_t n)
{
        while (!all_done(res, n))
                /* Nothing left to run with a request still open is a bug. */
                if (uv_run(loop, UV_RUN_ONCE) == 0 && !all_done(res, n))
                        TEST_FAIL_("the loop ran dry before every request completed");
}

static void close_client(uv_loop_t *loop, cas_http *c)
{
        int closed = 0;

        cas_http_close(c, on_closed, &closed);
        ASSERT_EQ(closed, 0); /* after the uv handles are closed */
        ASSERT_OK(uv_run(loop, UV_RUN_DEFAULT));
        ASSERT_EQ(closed, 1);
        /* Every uv handle is gone. */
        ASSERT_EQ(uv_loop_close(loop), 0);
}

static void request(cas_http *c, const char *method, const char *path, const char *body, result *res)
{
        memset(res, 0, sizeof(*res));
        ASSERT_OK(cas_http_request(c, method, path, body, NULL, on_done, res));
        ASSERT_TRUE(!res->done); /* never from inside the call */
}

/* ---- tests -------------------------------------------------------------- */

TEST(concurrent_requests)
{
        uv_loop_t loop;
        sim s = { 0 };
        result res[5];
        cas_http *c;

        sim_start(&s, NULL, NULL, NULL, NULL);
        ASSERT_OK(uv_loop_init(&loop));
        c = client(&loop, s.url, PASSWORD);
        ASSERT_STREQ(cas_http_cvm(c), strchr(s.url, '/') + 2);

        /* Two rounds: the second reuses the connections and easy handles. */
        for (int round = 0; round < 2; round++) {
                request(c, "GET", "/vm/vmList", NULL, &res[0]);
                request(c, "GET", "vm/vmList?offset=1&limit=2", NULL, &res[1]);
                request(c, "GET", "/vm/detail/101", NULL, &res[2]);
                request(c, "GET", "/operator/test", NULL, &res[3]);
                request(c, "PUT", "/vm/checkCbtBackup/101", NULL, &res[4]);
                ASSERT_EQ(cas_http_pending(c), 5);
                wait_all(&loop, res, ELEMENTSOF(res));
                ASSERT_EQ(cas_http_pending(c), 0);
                for (size_t i = 0; i < ELEMENTSOF(res); i++) {
                        ASSERT_EQ(res[i].calls, 1);
                        ASSERT_EQ(res[i].r.curl_code, CURLE_OK);
                        if (res[i].e != VB_OK)
                                TEST_FAIL_("round %d request %zu: %s", round, i, res[i].msg);
                        ASSERT_STREQ(res[i].msg, "");
                }

                ASSERT_EQ(res[0].r.status, 200);
                ASSERT_STREQ(res[0].total_raw, "6");
                ASSERT_EQ(res[0].r.total, 6);
                ASSERT_TRUE(strstr(res[0].content_type, "application/json"));
                ASSERT_TRUE(res[0].body[0] == '{');
                ASSERT_TRUE(strstr(res[0].body, "\"domain\""));
                ASSERT_TRUE(strstr(res[0].body, "web01"));
                ASSERT_EQ(strlen(res[0].body), res[0].r.body_len);

                /* Paged: Total still counts everything, the body has 2. */
                ASSERT_EQ(res[1].r.status, 200);
                ASSERT_EQ(res[1].r.total, 6);
                ASSERT_TRUE(res[1].r.body_len < res[0].r.body_len);
                ASSERT_TRUE(!strstr(res[1].body, "\"web01\""));

                ASSERT_EQ(res[2].r.status, 200);
                ASSERT_EQ(res[2].r.total, -1);
                ASSERT_TRUE(res[2].total_raw == NULL);
                ASSERT_TRUE(strstr(res[2].body, "web01-vda.qcow2"));

                ASSERT_EQ(res[3].r.status, 204);
                ASSERT_EQ(res[3].r.body_len, 0);
                ASSERT_STREQ(res[3].body, "");

                /* A PUT without a body. */
                ASSERT_EQ(res[4].r.status, 200);
                ASSERT_TRUE(strstr(res[4].body, "true"));
                for (size_t i = 0; i < ELEMENTSOF(res); i++)
                        result_free(&res[i]);
        }
        close_client(&loop, c);

        /* XML when asked for. */
        cas_http_options o = { .url = s.url, .user = "admin", .password = PASSWORD, .xml = true };
        ASSERT_OK(uv_loop_init(&loop));
        ASSERT_OK(cas_http_new(&loop, &o, &c));
        request(c, "GET", "/vm/vmList?limit=1", NULL, &res[0]);
        wait_all(&loop, res, 1);
        ASSERT_EQ(res[0].r.status, 200);
        ASSERT_EQ(res[0].r.total, 6);
        ASSERT_TRUE(strstr(res[0].content_type, "xml"));
        ASSERT_TRUE(strncmp(res[0].body, "<?xml", 5) == 0);
        ASSERT_TRUE(strstr(res[0].body, "<domain>"));
        result_free(&res[0]);
        close_client(&loop, c);
        sim_stop(&s);
}

TEST(wrong_password)
{
        char expect[256];
        uv_loop_t loop;
        sim s = { 0 };
        result res;
        cas_http *c;

        sim_start(&s, NULL, NULL, NULL, NULL);
        ASSERT_OK(uv_loop_init(&loop));
        c = client(&loop, s.url, "wrong");
        request(c, "GET", "/vm/vmList", NULL, &res);
        wait_all(&loop, &res, 1);
        ASSERT_EQ(res.r.curl_code, CURLE_OK);
        ASSERT_EQ(res.r.status, 401);
        ASSERT_EQ(res.e, VB_E_AUTH);
        snprintf(expect, sizeof(expect),
                 "CVM 127.0.0.1:%d: GET /vm/vmList: 401 unauthorized: check the user and password", s.port);
        ASSERT_STREQ(res.msg, expect);
        result_free(&res);
        close_client(&loop, c);
        sim_stop(&s);
}

static void check_unknown_vm(const char *charset_mode)
{
        uv_loop_t loop;
        sim s = { 0 };
        result res;
        cas_http *c;

        sim_start(&s, NULL, NULL, "--error-charset", charset_mode);
        ASSERT_OK(uv_loop_init(&loop));
        c = client(&loop, s.url, PASSWORD);
        request(c, "GET", "/vm/detail/99999", NULL, &res);
        wait_all(&loop, &res, 1);
        ASSERT_EQ(res.r.curl_code, CURLE_OK);
        ASSERT_EQ(res.r.status, 409);
        ASSERT_STREQ(res.error_code, "1001");
        ASSERT_TRUE(res.error_message && res.r.error_message_len > 0);
        ASSERT_EQ(res.r.error_message_len, strlen(res.error_message));
        ASSERT_EQ(res.e, VB_E_NOT_FOUND);
        fprintf(stderr, "%s: %s\n", charset_mode, res.msg);
        ASSERT_TRUE(strstr(res.msg, "GET /vm/detail/99999: 409 error 1001: "));
        /* "虚拟机" (virtual machine) in UTF-8, whichever charset it came in. */
        ASSERT_TRUE(strstr(res.msg, "\xe8\x99\x9a\xe6\x8b\x9f\xe6\x9c\xba"));
        if (streq(charset_mode, "gbk")) {
                ASSERT_TRUE(res.charset && strcasecmp(res.charset, "GBK") == 0);
                /* The raw bytes are GBK (虚 is B0 B4... not UTF-8's E8). */
                ASSERT_TRUE(!strstr(res.error_message, "\xe8\x99\x9a"));
        } else {
                ASSERT_TRUE(strstr(res.error_message, "\xe8\x99\x9a\xe6\x8b\x9f\xe6\x9c\xba"));
        }
        result_free(&res);

        /* An unknown path: 404, refused. A POST with a body works as a request. */
        request(c, "POST", "/no/such/path", "{\"a\":1}", &res);
        wait_all(&loop, &res, 1);
        ASSERT_EQ(res.r.status, 404);
        ASSERT_EQ(res.e, VB_E_REFUSED);
        ASSERT_TRUE(strstr(res.msg, "POST /no/such/path: 404 not found"));
        result_free(&res);
        close_client(&loop, c);
        sim_stop(&s);
}

TEST(unknown_vm_utf8)
{
        check_unknown_vm("utf8");
}

TEST(unknown_vm_gbk)
{
        check_unknown_vm("gbk");
}

TEST(closed_port)
{
        char url[64];
        uv_loop_t loop;
        result res;
        cas_http *c;

        snprintf(url, sizeof(url), "http://127.0.0.1:%d", free_port());
        ASSERT_OK(uv_loop_init(&loop));
        c = client(&loop, url, PASSWORD);
        request(c, "GET", "/vm/vmList", NULL, &res);
        wait_all(&loop, &res, 1);
        ASSERT_EQ(res.r.curl_code, CURLE_COULDNT_CONNECT);
        ASSERT_EQ(res.r.status, 0);
        ASSERT_EQ(res.e, VB_E_NETWORK);
        ASSERT_TRUE(strstr(res.msg, "GET /vm/vmList: cannot connect ("));
        ASSERT_TRUE(strstr(res.msg, url + 7)); /* names the CVM */
        result_free(&res);
        close_client(&loop, c);
}

/* A server that accepts connections and never answers. */
static int silent_server(int *port)
{
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(sa);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(bind(fd, (struct sockaddr *)&sa, sizeof(sa)));
        ASSERT_OK(listen(fd, 16));
        ASSERT_OK(getsockname(fd, (struct sockaddr *)&sa, &len));
        *port = ntohs(sa.sin_port);
        return fd;
}

TEST(timeout)
{
        cas_http_options o = { .user = "admin", .password = PASSWORD, .timeout_ms = 300 };
        _cleanup_close_ int fd = -1;
        char url[64];
        uv_loop_t loop;
        uint64_t t0;
        result res;
        cas_http *c;
        int port;

        fd = silent_server(&port);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
        o.url = url;
        ASSERT_OK(uv_loop_init(&loop));
        ASSERT_OK(cas_http_new(&loop, &o, &c));
        t0 = uv_hrtime();
        request(c, "GET", "/vm/vmList", NULL, &res);
        wait_all(&loop, &res, 1);
        ASSERT_TRUE(uv_hrtime() - t0 >= 250 * 1000000ull);
        ASSERT_TRUE(uv_hrtime() - t0 < 5000 * 1000000ull);
        ASSERT_EQ(res.r.curl_code, CURLE_OPERATION_TIMEDOUT);
        ASSERT_EQ(res.e, VB_E_NETWORK);
        ASSERT_TRUE(strstr(res.msg, "GET /vm/vmList: timed out ("));
        result_free(&res);
        close_client(&loop, c);
}

static void close_in_done(void *userdata, const cas_http_response *r)
{
        cas_http **cp = userdata;

        ASSERT_TRUE(!r->cancelled);
        cas_http_close(*cp, NULL, NULL);
        /* Closing: no new request. */
        ASSERT_EQ(cas_http_request(*cp, "GET", "/x", NULL, NULL, close_in_done, cp), -ESHUTDOWN);
}

TEST(close_cancels)
{
        _cleanup_close_ int fd = -1;
        char url[64], expect[256];
        uv_loop_t loop;
        result res[3];
        cas_http *c;
        int port, closed = 0;

        /* Requests to a silent server, closed while they wait. */
        fd = silent_server(&port);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
        ASSERT_OK(uv_loop_init(&loop));
        c = client(&loop, url, PASSWORD);
        for (size_t i = 0; i < ELEMENTSOF(res); i++)
                request(c, "GET", "/vm/vmList", NULL, &res[i]);
        for (int i = 0; i < 20; i++) /* let them connect */
                uv_run(&loop, UV_RUN_NOWAIT);
        ASSERT_EQ(cas_http_pending(c), 3);
        cas_http_close(c, on_closed, &closed);
        for (size_t i = 0; i < ELEMENTSOF(res); i++) {
                ASSERT_EQ(res[i].calls, 1);
                ASSERT_TRUE(res[i].r.cancelled);
                ASSERT_EQ(res[i].e, VB_E_INTERRUPTED);
                snprintf(expect, sizeof(expect), "CVM 127.0.0.1:%d: GET /vm/vmList: cancelled", port);
                ASSERT_STREQ(res[i].msg, expect);
                result_free(&res[i]);
        }
        ASSERT_EQ(closed, 0);
        ASSERT_OK(uv_run(&loop, UV_RUN_DEFAULT));
        ASSERT_EQ(closed, 1);
        ASSERT_EQ(uv_loop_close(&loop), 0);
}

TEST(close_from_done)
{
        uv_loop_t loop;
        sim s = { 0 };
        result res;
        cas_http *c;

        sim_start(&s, NULL, NULL, NULL, NULL);
        ASSERT_OK(uv_loop_init(&loop));
        c = client(&loop, s.url, PASSWORD);
        /* The first to finish closes the client; the other is cancelled. */
        ASSERT_OK(cas_http_request(c, "GET", "/operator/test", NULL, NULL, close_in_done, &c));
        memset(&res, 0, sizeof(res));
        ASSERT_OK(cas_http_request(c, "GET", "/vm/vmList?offset=0&limit=100", NULL, NULL, on_done, &res));
        ASSERT_OK(uv_run(&loop, UV_RUN_DEFAULT));
        ASSERT_EQ(res.calls, 1);
        /* Either it finished first (and closed nothing) or it was cancelled. */
        ASSERT_TRUE(res.r.cancelled || res.r.status == 200);
        result_free(&res);
        ASSERT_EQ(uv_loop_close(&loop), 0);
        sim_stop(&s);
}

TEST(https)
{
        char cmd[512];
        uv_loop_t loop;
        sim s = { 0 };
        result res;
        cas_http *c;

        if (system("command -v openssl >/dev/null 2>&1") != 0) {
                fprintf(stderr, "no openssl: skipped\n");
                exit(EXIT_TEST_SKIP);
        }
        snprintf(cmd, sizeof(cmd),
                 "openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 2 "
                 "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 >openssl.log 2>&1");
        ASSERT_EQ(system(cmd), 0);
        sim_start(&s, "cert.pem", "key.pem", NULL, NULL);

        /* Verified by default: a self-signed certificate is refused. */
        ASSERT_OK(uv_loop_init(&loop));
        c = client(&loop, s.https_url, PASSWORD);
        request(c, "GET", "/vm/vmList", NULL, &res);
        wait_all(&loop, &res, 1);
        ASSERT_EQ(res.r.curl_code, CURLE_PEER_FAILED_VERIFICATION);
        ASSERT_EQ(res.r.status, 0);
        ASSERT_EQ(res.e, VB_E_NETWORK);
        fprintf(stderr, "%s\n", res.msg);
        ASSERT_TRUE(strstr(res.msg, "TLS certificate verification failed"));
        ASSERT_TRUE(strstr(res.msg, "insecure"));
        ASSERT_TRUE(strstr(res.msg, "CA certificate"));
        result_free(&res);
        close_client(&loop, c);

        /* Insecure, then the CA file: both get through (Digest included). */
        for (int mode = 0; mode < 2; mode++) {
                cas_http_options o = { .url = s.https_url, .user = "admin", .password = PASSWORD };

                if (mode == 0)
                        o.insecure = true;
                else
                        o.ca_file = "cert.pem";
                ASSERT_OK(uv_loop_init(&loop));
                ASSERT_OK(cas_http_new(&loop, &o, &c));
                request(c, "GET", "/vm/vmList", NULL, &res);
                wait_all(&loop, &res, 1);
                ASSERT_EQ(res.r.curl_code, CURLE_OK);
                ASSERT_EQ(res.r.status, 200);
                ASSERT_EQ(res.r.total, 6);
                ASSERT_EQ(res.e, VB_OK);
                result_free(&res);
                close_client(&loop, c);
        }

        /* A CA file that does not exist is a usage error. */
        cas_http_options o = { .url = s.https_url, .user = "admin", .password = PASSWORD, .ca_file = "nope.pem" };
        ASSERT_OK(uv_loop_init(&loop));
        ASSERT_OK(cas_http_new(&loop, &o, &c));
        request(c, "GET", "/vm/vmList", NULL, &res);
        wait_all(&loop, &res, 1);
        ASSERT_TRUE(res.r.curl_code != CURLE_OK);
        ASSERT_EQ(res.e, VB_E_USAGE);
        result_free(&res);
        close_client(&loop, c);
        sim_stop(&s);
}

TEST(options)
{
        static const char *const bad[] = {
                "ftp://h:21",      "http://",           "not a url",          "http://h:8080/x?y=1",
                "http://h:8080#f", "http://u:p@h:8080", "file:///etc/passwd",
        };
        cas_http_options o = { .user = "u", .password = "p" };
        uv_loop_t loop;
        cas_http *c;

        ASSERT_OK(uv_loop_init(&loop));
        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                o.url = bad[i];
                c = NULL;
                if (cas_http_new(&loop, &o, &c) != -EINVAL)
                        TEST_FAIL_("accepted %s", bad[i]);
        }
        o.url = NULL;
        ASSERT_ERR(cas_http_new(&loop, &o, &c), EINVAL);

        /* Default ports (cas-api.md §1.1). */
        o.url = "http://cvm.example";
        ASSERT_OK(cas_http_new(&loop, &o, &c));
        ASSERT_STREQ(cas_http_cvm(c), "cvm.example:8080");
        /* Bad requests are refused at once, without a callback. */
        ASSERT_ERR(cas_http_request(c, "GET", "/a b", NULL, NULL, on_done, NULL), EINVAL);
        ASSERT_ERR(cas_http_request(c, "GET", "/a\r\nX: y", NULL, NULL, on_done, NULL), EINVAL);
        ASSERT_ERR(cas_http_request(c, "get", "/a", NULL, NULL, on_done, NULL), EINVAL);
        ASSERT_ERR(cas_http_request(c, "GET", "/a", "body", NULL, on_done, NULL), EINVAL);
        ASSERT_ERR(cas_http_request(c, "GET", "/a", NULL, NULL, NULL, NULL), EINVAL);
        ASSERT_EQ(cas_http_pending(c), 0);
        cas_http_close(c, NULL, NULL);
        o.url = "https://[::1]/";
        ASSERT_OK(cas_http_new(&loop, &o, &c));
        ASSERT_STREQ(cas_http_cvm(c), "[::1]:8443");
        cas_http_close(c, NULL, NULL);
        ASSERT_OK(uv_run(&loop, UV_RUN_DEFAULT));
        ASSERT_EQ(uv_loop_close(&loop), 0);
}

TEST(error_mapping)
{
        cas_http_response r = { .cvm = "10.0.0.1:8080", .method = "PUT", .path = "/vm/start/7", .total = -1 };
        char msg[512];

        r.status = 200;
        ASSERT_EQ(cas_http_error(&r, msg, sizeof(msg)), VB_OK);
        ASSERT_STREQ(msg, "");
        r.status = 403;
        ASSERT_EQ(cas_http_error(&r, msg, sizeof(msg)), VB_E_REFUSED);
        r.status = 500;
        ASSERT_EQ(cas_http_error(&r, msg, sizeof(msg)), VB_E_REFUSED);
        ASSERT_STREQ(msg, "CVM 10.0.0.1:8080: PUT /vm/start/7: HTTP status 500");
        r.status = 302;
        ASSERT_EQ(cas_http_error(&r, msg, sizeof(msg)), VB_E_PROTOCOL);
        r.status = 409;
        r.error_code = "1002";
        r.error_message = "VM exists";
        r.error_message_len = 9;
        ASSERT_EQ(cas_http_error(&r, msg, sizeof(msg)), VB_E_REFUSED);
        ASSERT_STREQ(msg, "CVM 10.0.0.1:8080: PUT /vm/start/7: 409 error 1002: VM exists");
        r.error_code = "402";
        ASSERT_EQ(cas_http_error(&r, msg, sizeof(msg)), VB_E_NOT_FOUND);
        /* GBK without a charset header (S5 saw that): decoded anyway. "主机" in GBK. */
        r.error_message = "\xd6\xf7\xbb\xfa";
        r.error_message_len = 4;
        ASSERT_EQ(cas_http_error(&r, msg, sizeof(msg)), VB_E_NOT_FOUND);
        ASSERT_STREQ(msg, "CVM 10.0.0.1:8080: PUT /vm/start/7: 409 error 402: \xe4\xb8\xbb\xe6\x9c\xba");
        r.error_code = NULL;
        r.error_message = NULL;
        r.error_message_len = 0;
        ASSERT_EQ(cas_http_error(&r, msg, sizeof(msg)), VB_E_REFUSED);
        ASSERT_STREQ(msg, "CVM 10.0.0.1:8080: PUT /vm/start/7: 409 error ?: (no message)");
        r.curl_code = CURLE_RECV_ERROR;
        r.curl_error = "Connection reset by peer";
        ASSERT_EQ(cas_http_error(&r, msg, sizeof(msg)), VB_E_NETWORK);
        ASSERT_STREQ(msg, "CVM 10.0.0.1:8080: PUT /vm/start/7: connection failed (Connection reset by peer)");
        r.curl_code = CURLE_WEIRD_SERVER_REPLY;
        ASSERT_EQ(cas_http_error(&r, msg, sizeof(msg)), VB_E_PROTOCOL);
        /* A short buffer cuts the message, never overflows. */
        ASSERT_EQ(cas_http_error(&r, msg, 8), VB_E_PROTOCOL);
        ASSERT_STREQ(msg, "CVM 10.");
}
