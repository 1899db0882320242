/* hopbench-oci: the OCI runtime wrapper, registered in place of a runtime binary.
 *
 * Some stacks (CRI-O, cri-dockerd) ask for oom_score_adj -998 on the pause container and
 * have no setting to stop it. A host without CAP_SYS_RESOURCE cannot lower an
 * oom_score_adj, and runc then fails ("can't get final child's PID from pipe: EOF").
 * At `create`, this wrapper raises process.oomScoreAdj in the bundle's config.json to
 * the caller's own value (what containerd's restrict_oom_score_adj does), then execs the
 * real runtime with the same arguments. Every other command is exec'd untouched.
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
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef REAL_RUNTIME
#error "build with -DREAL_RUNTIME=\"/path/to/runtime\""
#endif

#define KEY "\"oomScoreAdj\":"

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
    /* The command is the first argument that is not a global flag or a flag's value. */
    static const char *with_value[] = {"--root", "--log", "--log-format", "--criu", "--rootless", NULL};
    for (int i = 1; i < argc; i++) {
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
    execv(REAL_RUNTIME, args);
    fprintf(stderr, "hopbench-oci: exec %s: %s\n", REAL_RUNTIME, strerror(errno));
    return 127;
}
