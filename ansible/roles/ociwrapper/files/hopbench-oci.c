/* hopbench-oci: the OCI runtime wrapper, registered in place of a runtime binary.
 *
 * Some stacks (CRI-O, cri-dockerd) ask for oom_score_adj -998 on the pause container and
 * have no setting to stop it. A host without CAP_SYS_RESOURCE cannot lower an
 * oom_score_adj, and runc then fails ("can't get final child's PID from pipe: EOF").
 * At `create`, this wrapper raises process.oomScoreAdj in the bundle's config.json to
 * the caller's own value (what containerd's restrict_oom_score_adj does), then execs the
 * real runtime with the same arguments. Every other command is exec'd untouched.
 *
 * Timing (the in-situ split): when the trace file (-DTRACE_PATH) exists, the wrapper does
 * not exec but forks the real program, waits for it and appends one line to the trace:
 *
 *   KIND \t ENTRY_NS \t FORK_NS \t EXIT_NS \t STATUS \t ARG1 \t ARG2 ...
 *
 * on CLOCK_MONOTONIC (the clock the agent times CRI calls with): ENTRY when the wrapper
 * started, FORK just before the real program was started, EXIT once it was reaped. KIND is
 * "oci", or "cni" for the CNI plugin build (-DTRACE_KIND="cni"), whose line then carries
 * CNI_COMMAND and CNI_CONTAINERID in place of arguments. STATUS is the exit status, or 128
 * plus the signal that ended it. One write(2) with O_APPEND per line, so concurrent
 * invocations never interleave. Signals the wrapper gets are passed on to the program.
 * Without the trace file (the agent creates it only while it records) the wrapper execs
 * as before; the only cost is one failed open(2).
 *
 * It sits inside the timed path, so it is small and does no more than that: one read of
 * /proc/self/oom_score_adj and, at create only, one read and at most one rewrite of
 * config.json. The real runtime is fixed at build time (-DREAL_RUNTIME="/usr/sbin/runc"),
 * so nothing is looked up at run time; so are fixed extra arguments put before the caller's
 * (-DEXTRA_ARGS='"--platform=ptrace", "--network=host"' for runsc). Built with gcc -static.
 *
 * The spec is JSON written by Go's encoding/json (compact, no spaces): the value is found
 * as the text "oomScoreAdj": followed by an integer. A spec without the key is left alone.
 */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef REAL_RUNTIME
#error "build with -DREAL_RUNTIME=\"/path/to/runtime\""
#endif

#ifndef TRACE_PATH
#define TRACE_PATH ""
#endif
#ifndef TRACE_KIND
#define TRACE_KIND "oci"
#endif

#define KEY "\"oomScoreAdj\":"

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static volatile pid_t child_pid = 0;

static void forward(int sig) {
    if (child_pid > 0) kill(child_pid, sig);
}

/* Append `s` to the line, tabs and newlines turned into spaces; stops at the end of buf. */
static size_t put(char *buf, size_t at, size_t cap, const char *s) {
    for (; s && *s && at + 1 < cap; s++) buf[at++] = (*s == '\t' || *s == '\n') ? ' ' : *s;
    return at;
}

/* Fork and wait for the real program, then append the trace line; returns the exit status. */
static int traced(int trace_fd, int64_t entry, char **args) {
    static const int passed_on[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward;
    for (size_t i = 0; i < sizeof passed_on / sizeof passed_on[0]; i++) sigaction(passed_on[i], &sa, NULL);
    int64_t fork_at = now_ns();
    pid_t pid = fork();
    if (pid < 0) {
        close(trace_fd);
        execv(REAL_RUNTIME, args);
        return 127;
    }
    if (pid == 0) {
        execv(REAL_RUNTIME, args);
        fprintf(stderr, "hopbench-oci: exec %s: %s\n", REAL_RUNTIME, strerror(errno));
        _exit(127);
    }
    child_pid = pid;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    int64_t exit_at = now_ns();
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 255;
    char line[4096];
    int n = snprintf(line, sizeof line, "%s\t%lld\t%lld\t%lld\t%d", TRACE_KIND, (long long)entry,
                     (long long)fork_at, (long long)exit_at, code);
    size_t at = n > 0 && (size_t)n < sizeof line ? (size_t)n : 0;
    if (!strcmp(TRACE_KIND, "cni")) {
        const char *fields[] = {getenv("CNI_COMMAND"), getenv("CNI_CONTAINERID")};
        for (int i = 0; i < 2; i++) {
            if (at + 1 < sizeof line - 1) line[at++] = '\t';
            at = put(line, at, sizeof line - 1, fields[i] ? fields[i] : "");
        }
    } else {
        for (char **a = args + 1; *a; a++) {
            if (at + 1 < sizeof line - 1) line[at++] = '\t';
            at = put(line, at, sizeof line - 1, *a);
        }
    }
    line[at++] = '\n';
    if (write(trace_fd, line, at) != (ssize_t)at)
        fprintf(stderr, "hopbench-oci: could not write the trace line to %s\n", TRACE_PATH);
    close(trace_fd);
    if (WIFSIGNALED(status)) {
        signal(WTERMSIG(status), SIG_DFL);
        kill(getpid(), WTERMSIG(status));
    }
    return code;
}

static int own_oom_score_adj(void) {
    char buf[32] = {0};
    int fd = open("/proc/self/oom_score_adj", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    return n > 0 ? atoi(buf) : 0;
}

/* Bundle directory from the create arguments (--bundle X, --bundle=X, -b X), else ".". */
static const char *bundle_dir(int argc, char **argv, int from) {
    for (int i = from; i < argc; i++) {
        if ((!strcmp(argv[i], "--bundle") || !strcmp(argv[i], "-b")) && i + 1 < argc) return argv[i + 1];
        if (!strncmp(argv[i], "--bundle=", 9)) return argv[i] + 9;
    }
    return ".";
}

static int clamp(const char *bundle, int floor_adj) {
    char path[4096], tmp[4200];
    if (snprintf(path, sizeof path, "%s/config.json", bundle) >= (int)sizeof path) return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size <= 0 || st.st_size > (64 << 20)) { close(fd); return -1; }
    char *data = malloc((size_t)st.st_size + 1);
    if (!data) { close(fd); return -1; }
    ssize_t got = 0;
    while (got < st.st_size) {
        ssize_t n = read(fd, data + got, (size_t)(st.st_size - got));
        if (n <= 0) { if (n < 0 && errno == EINTR) continue; free(data); close(fd); return -1; }
        got += n;
    }
    close(fd);
    data[got] = '\0';
    char *at = strstr(data, KEY);
    if (!at) { free(data); return 0; }
    char *num = at + strlen(KEY), *end;
    long value = strtol(num, &end, 10);
    if (end == num || value >= floor_adj) { free(data); return 0; }
    snprintf(tmp, sizeof tmp, "%s.hopbench-oci", path);
    int out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, st.st_mode & 0777);
    if (out < 0) { free(data); return -1; }
    char repl[24];
    int rlen = snprintf(repl, sizeof repl, "%d", floor_adj);
    int ok = write(out, data, (size_t)(num - data)) == num - data &&
             write(out, repl, (size_t)rlen) == rlen &&
             write(out, end, strlen(end)) == (ssize_t)strlen(end);
    ok = close(out) == 0 && ok;
    free(data);
    if (!ok || rename(tmp, path) < 0) { unlink(tmp); return -1; }
    return 1;
}

int main(int argc, char **argv) {
    int64_t entry = now_ns();
    /* The command is the first argument that is not a global flag or a flag's value. */
    static const char *with_value[] = {"--root", "--log", "--log-format", "--criu", "--rootless", NULL};
    for (int i = 1; i < argc && strcmp(TRACE_KIND, "cni"); i++) {
        if (argv[i][0] != '-') {
            if (!strcmp(argv[i], "create") || !strcmp(argv[i], "run")) {
                if (clamp(bundle_dir(argc, argv, i + 1), own_oom_score_adj()) < 0)
                    fprintf(stderr, "hopbench-oci: could not clamp oomScoreAdj in %s/config.json: %s\n",
                            bundle_dir(argc, argv, i + 1), strerror(errno));
            }
            break;
        }
        int takes_value = 0;
        for (const char **f = with_value; *f; f++)
            if (!strcmp(argv[i], *f)) takes_value = 1;
        if (takes_value) i++;
    }
#ifdef EXTRA_ARGS
    static const char *extra[] = {EXTRA_ARGS};
    enum { N_EXTRA = sizeof extra / sizeof extra[0] };
#else
    static const char **extra = NULL;
    enum { N_EXTRA = 0 };
#endif
    char **args = calloc((size_t)argc + N_EXTRA + 1, sizeof *args);
    if (!args) return 127;
    args[0] = (char *)REAL_RUNTIME;
    for (int i = 0; i < N_EXTRA; i++) args[1 + i] = (char *)extra[i];
    for (int i = 1; i < argc; i++) args[N_EXTRA + i] = argv[i];
    int trace_fd = TRACE_PATH[0] ? open(TRACE_PATH, O_WRONLY | O_APPEND | O_CLOEXEC) : -1;
    if (trace_fd >= 0) return traced(trace_fd, entry, args);
    execv(REAL_RUNTIME, args);
    fprintf(stderr, "hopbench-oci: exec %s: %s\n", REAL_RUNTIME, strerror(errno));
    return 127;
}
