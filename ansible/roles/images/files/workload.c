/* hopbench workload: the container every scenario starts.
 * Prints a ready line (the harness reads it from the container log to prove
 * the container really ran), then waits. On SIGTERM or SIGINT it prints a
 * stop line and exits 0, so a clean StopContainer ends with exit code 0 and
 * takes no grace period (PID 1 of its own PID namespace ignores signals it
 * has no handler for). With arguments "exit N" it prints the ready line and
 * exits with status N at once (for short-lived runs). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void on_stop(int sig) {
    static const char msg[] = "hopbench-workload stopping\n";
    (void)sig;
    if (write(STDOUT_FILENO, msg, sizeof msg - 1) < 0) _exit(2);
    _exit(0);
}

int main(int argc, char **argv) {
    struct sigaction stop = {.sa_handler = on_stop};
    if (sigaction(SIGINT, &stop, NULL) < 0 || sigaction(SIGTERM, &stop, NULL) < 0) {
        perror("sigaction");
        return 1;
    }
    printf("hopbench-workload ready pid=%d\n", (int)getpid());
    fflush(stdout);
    if (argc > 2 && strcmp(argv[1], "exit") == 0) return atoi(argv[2]);
    for (;;) pause();
}
