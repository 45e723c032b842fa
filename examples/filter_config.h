/* Read the robot YAML's filter numbers, as `vla-edge robot export-filter ROBOT --out R.filter`
 * writes them (one "key value..." line per field), into a vla_edge_filter_config.
 * A small example helper shared by filter_replay.c and control_loop.cpp (C99 and C++):
 *
 *   vla_edge_filter_config config;
 *   static filter_config_storage storage;          // what the config's pointers point into
 *   if (filter_config_read("ur3.filter", &config, &storage)) exit(2);   // message on stderr
 */
#ifndef VLA_EDGE_EXAMPLE_FILTER_CONFIG_H
#define VLA_EDGE_EXAMPLE_FILTER_CONFIG_H

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
} filter_config_storage;

static int filter_config_fail(const char* what, const char* detail) {
    fprintf(stderr, "filter config: %s: %s\n", what, detail);
    return 2;
}

/* Parse the numbers after the key; returns how many were read (at most cap). */
static int filter_config_numbers(char* rest, double* out, int cap) {
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

static int filter_config_read(const char* path, vla_edge_filter_config* c, filter_config_storage* s) {
    FILE* f = fopen(path, "r");
    if (!f) return filter_config_fail(path, "cannot open");
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
        int n = filter_config_numbers(rest, v, MAX_VALUES), a = arm ? (int)(arm - s->arms) : -1;
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
            if (c->n_arms == MAX_ARMS) return filter_config_fail(path, "too many arms");
            arm = &s->arms[c->n_arms++];
            a = (int)(arm - s->arms);
            arm->kind = key[4] == 'd' ? VLA_EDGE_ARM_DH : VLA_EDGE_ARM_CHAIN;
            arm->n_joints = n;
            for (int j = 0; j < n; ++j) s->joints[a][j] = (int)v[j];
            arm->joint_indices = s->joints[a];
            c->arms = s->arms;
        } else if (!arm) {
            return filter_config_fail(path, key);
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
        else return filter_config_fail(path, key);
    }
    fclose(f);
    return 0;
}

#endif /* VLA_EDGE_EXAMPLE_FILTER_CONFIG_H */
