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

#include "vla_edge_safety.h"

#define MAX_ARMS 8
#define MAX_VALUES (VLA_EDGE_FILTER_MAX_DOF * 3)

/* Storage behind the config's pointers. */
typedef struct {
    double hw_min[VLA_EDGE_FILTER_MAX_DOF], hw_max[VLA_EDGE_FILTER_MAX_DOF];
    double hw_vel[VLA_EDGE_FILTER_MAX_DOF], hw_acc[VLA_EDGE_FILTER_MAX_DOF];
    double pos_min[VLA_EDGE_FILTER_MAX_DOF], pos_max[VLA_EDGE_FILTER_MAX_DOF];
    double vel[VLA_EDGE_FILTER_MAX_DOF], acc[VLA_EDGE_FILTER_MAX_DOF], max_step[VLA_EDGE_FILTER_MAX_DOF];
    vla_edge_filter_gripper grippers[VLA_EDGE_FILTER_MAX_DOF];
    vla_edge_filter_arm arms[MAX_ARMS];
    int joints[MAX_ARMS][VLA_EDGE_FILTER_MAX_DOF];
    double dh[MAX_ARMS][4][VLA_EDGE_FILTER_MAX_DOF];
    double chain[MAX_ARMS][3][MAX_VALUES];
} config_storage;

static int fail(const char* what, const char* detail) {
    fprintf(stderr, "filter_replay: %s: %s\n", what, detail);
    return 2;
}

/* Parse the numbers after the key; returns how many were read (at most cap). */
static int numbers(char* rest, double* out, int cap) {
    int n = 0;
    for (char* tok = strtok(rest, " \t\n"); tok && n < cap; tok = strtok(NULL, " \t\n")) out[n++] = strtod(tok, NULL);
    return n;
}

static void copy3(double* dst, const double* src) { memcpy(dst, src, 3 * sizeof(double)); }

/* Copy n parsed values into storage that the config then points to. */
static const double* fill(double* dst, const double* src, int n) {
    memcpy(dst, src, (size_t)n * sizeof(double));
    return dst;
}

static int read_config(const char* path, vla_edge_filter_config* c, config_storage* s) {
    FILE* f = fopen(path, "r");
    if (!f) return fail(path, "cannot open");
    memset(c, 0, sizeof *c);
    memset(s, 0, sizeof *s);
    char line[16384];
    double v[MAX_VALUES];
    vla_edge_filter_arm* arm = NULL;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        char* key = strtok(line, " \t\n");
        if (!key) continue;
        char* rest = key + strlen(key) + 1;
        int n = numbers(rest, v, MAX_VALUES), a = arm ? (int)(arm - s->arms) : -1;
        if (!strcmp(key, "dof")) c->dof = (int)v[0];
        else if (!strcmp(key, "control_rate_hz")) c->control_rate_hz = v[0];
        else if (!strcmp(key, "stale_after_s")) c->stale_after_s = v[0];
        else if (!strcmp(key, "hardware_position_min")) c->hardware_position_min = fill(s->hw_min, v, n);
        else if (!strcmp(key, "hardware_position_max")) c->hardware_position_max = fill(s->hw_max, v, n);
        else if (!strcmp(key, "hardware_velocity")) c->hardware_velocity = fill(s->hw_vel, v, n);
        else if (!strcmp(key, "hardware_acceleration")) c->hardware_acceleration = fill(s->hw_acc, v, n);
        else if (!strcmp(key, "hardware_tcp_speed")) c->hardware_tcp_speed = v[0];
        else if (!strcmp(key, "position_min")) c->position_min = fill(s->pos_min, v, n);
        else if (!strcmp(key, "position_max")) c->position_max = fill(s->pos_max, v, n);
        else if (!strcmp(key, "position_margin")) c->position_margin = v[0];
        else if (!strcmp(key, "velocity")) c->velocity = fill(s->vel, v, n);
        else if (!strcmp(key, "acceleration")) c->acceleration = fill(s->acc, v, n);
        else if (!strcmp(key, "max_step")) c->max_step = fill(s->max_step, v, n);
        else if (!strcmp(key, "tcp_speed")) c->tcp_speed = v[0];
        else if (!strcmp(key, "tracking_error")) c->tracking_error = v[0];
        else if (!strcmp(key, "workspace_min")) copy3(c->workspace_min, v);
        else if (!strcmp(key, "workspace_max")) copy3(c->workspace_max, v);
        else if (!strcmp(key, "gripper")) {
            vla_edge_filter_gripper* g = &s->grippers[c->n_grippers++];
            g->index = (int)v[0], g->range_min = v[1], g->range_max = v[2], g->max_rate = v[3];
            c->grippers = s->grippers;
        } else if (!strcmp(key, "arm_dh") || !strcmp(key, "arm_chain")) {
            if (c->n_arms == MAX_ARMS) return fail(path, "too many arms");
            arm = &s->arms[c->n_arms++];
            a = (int)(arm - s->arms);
            arm->kind = key[4] == 'd' ? VLA_EDGE_ARM_DH : VLA_EDGE_ARM_CHAIN;
            arm->n_joints = n;
            for (int j = 0; j < n; ++j) s->joints[a][j] = (int)v[j];
            arm->joint_indices = s->joints[a];
            c->arms = s->arms;
        } else if (!arm) {
            return fail(path, key);
        } else if (!strcmp(key, "dh_a")) arm->dh_a = fill(s->dh[a][0], v, n);
        else if (!strcmp(key, "dh_alpha")) arm->dh_alpha = fill(s->dh[a][1], v, n);
        else if (!strcmp(key, "dh_d")) arm->dh_d = fill(s->dh[a][2], v, n);
        else if (!strcmp(key, "dh_theta_offset")) arm->dh_theta_offset = fill(s->dh[a][3], v, n);
        else if (!strcmp(key, "chain_xyz")) arm->chain_xyz = fill(s->chain[a][0], v, n);
        else if (!strcmp(key, "chain_rpy")) arm->chain_rpy = fill(s->chain[a][1], v, n);
        else if (!strcmp(key, "chain_axis")) arm->chain_axis = fill(s->chain[a][2], v, n);
        else if (!strcmp(key, "base_xyz")) copy3(arm->base_xyz, v);
        else if (!strcmp(key, "base_rpy")) copy3(arm->base_rpy, v);
        else if (!strcmp(key, "tool_xyz")) copy3(arm->tool_xyz, v);
        else return fail(path, key);
    }
    fclose(f);
    return 0;
}

int main(int argc, char** argv) {
    if (argc != 2) return fail("usage", "filter_replay ROBOT.filter < ticks.txt");
    vla_edge_filter_config config;
    static config_storage storage;
    if (read_config(argv[1], &config, &storage)) return 2;
    vla_edge_filter* filter = NULL;
    if (vla_edge_filter_create(&config, 0, &filter) != VLA_EDGE_FILTER_OK) {
        return fail("vla_edge_filter_create", vla_edge_filter_last_error());
    }
    const int dof = vla_edge_filter_dof(filter);
    char line[16384];
    double v[2 * VLA_EDGE_FILTER_MAX_DOF + 8], command[VLA_EDGE_FILTER_MAX_DOF];
    while (fgets(line, sizeof line, stdin)) {
        char kind = line[0];
        int n = numbers(line + 1, v, 2 * dof + 8);
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
