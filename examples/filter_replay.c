/* Put a stream of joint targets through the vla-edge safety filter from C.
 *
 *   filter_replay ROBOT.filter < ticks.txt > decisions.txt
 *
 * ROBOT.filter: the robot YAML's limits as `vla-edge robot export-filter ROBOT` writes them (one
 * "key value..." line per field, see docs/embedding.md). ticks.txt: one line per control tick,
 *   S now target_time velocity_scale has_target t_1..t_dof has_state state_time q_1..q_dof
 * or one of
 *   R now state_time q_1..q_dof     resume from the stopped state
 *   W now                           watchdog check (as a timer thread would)
 *   T                               controlled stop
 *   E                               emergency stop (latched)
 * ("nan" is a missing time). For every line it prints what the filter decided:
 *   S state sent held stop_driver has_command c_1..c_dof n_codes code...   (%.17g numbers)
 *   R rc | W tripped | T stop_driver | E rc
 * Build: cmake (find_package(vla_edge CONFIG), target vla_edge::safety) or
 *   cc filter_replay.c $(pkg-config --cflags --libs vla_edge_safety) -lm
 * tests/robots/test_filter_c_abi.py does both and compares every decision with Python's.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter_config.h" /* the robot filter file -> vla_edge_filter_config */
#include "vla_edge_safety.h"

static int fail(const char* what, const char* detail) {
    fprintf(stderr, "filter_replay: %s: %s\n", what, detail);
    return 2;
}

int main(int argc, char** argv) {
    if (argc != 2) return fail("usage", "filter_replay ROBOT.filter < ticks.txt");
    vla_edge_filter_config config;
    static filter_config_storage storage;
    if (filter_config_read(argv[1], &config, &storage)) return 2;
    vla_edge_filter* filter = NULL;
    if (vla_edge_filter_create(&config, 0, &filter) != VLA_EDGE_FILTER_OK) {
        return fail("vla_edge_filter_create", vla_edge_filter_last_error());
    }
    const int dof = vla_edge_filter_dof(filter);
    char line[16384];
    double v[2 * VLA_EDGE_FILTER_MAX_DOF + 8], command[VLA_EDGE_FILTER_MAX_DOF];
    while (fgets(line, sizeof line, stdin)) {
        char kind = line[0];
        int n = filter_config_numbers(line + 1, v, 2 * dof + 8);
        int flag = 0, rc = VLA_EDGE_FILTER_OK;
        if (kind == 'R' && n == dof + 2) {
            printf("R %d\n", vla_edge_filter_resume(filter, v + 2, v[1], v[0]));
            continue;
        }
        if (kind == 'W' && n == 1) rc = vla_edge_filter_check_watchdog(filter, v[0], &flag);
        else if (kind == 'T') rc = vla_edge_filter_stop(filter, &flag);
        else if (kind == 'E') flag = vla_edge_filter_estop(filter);
        if (rc != VLA_EDGE_FILTER_OK) return fail("filter call", vla_edge_filter_last_error());
        if (kind == 'W' || kind == 'T' || kind == 'E') {
            printf("%c %d\n", kind, flag);
            continue;
        }
        if (kind != 'S' || n != 2 * dof + 6) return fail("tick", "malformed line");
        const double* target = v[3] != 0.0 ? v + 4 : NULL;
        const double* q = v[4 + dof] != 0.0 ? v + 6 + dof : NULL;
        vla_edge_filter_result r;
        if (vla_edge_filter_step(filter, target, v[1], q, v[5 + dof], v[2], v[0], command, &r) != VLA_EDGE_FILTER_OK) {
            return fail("vla_edge_filter_step", vla_edge_filter_last_error());
        }
        printf("S %s %d %d %d %d", vla_edge_filter_state_name(r.state), r.sent, r.held, r.stop_driver, r.has_command);
        for (int i = 0; i < dof; ++i) printf(" %.17g", r.has_command ? command[i] : 0.0);
        printf(" %d", r.n_interventions);
        for (int i = 0; i < r.n_interventions; ++i) printf(" %s", vla_edge_filter_code_name(r.codes[i]));
        printf("\n");
    }
    vla_edge_filter_destroy(filter);
    return 0;
}
