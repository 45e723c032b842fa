/* vla-edge safety filter, C ABI: put every joint command of a robot through the same filter the
 * Python SDK uses (vla_edge.robots.safety.SafetyFilter is a thin wrapper over this code).
 *
 * Library: libvla_edge_safety (no other dependency than the C++ runtime); libvla_edge links it
 * and vla_edge.h includes this header. docs/embedding.md walks through an example.
 *
 * Configuration: fill a vla_edge_filter_config with the numbers of the robot YAML (the same keys,
 * SI units; presets already resolved to DH tables / joint chains). The filter derives what it
 * enforces exactly as the Python config does (operating range shrunk by position_margin, gripper
 * ranges and rates intersected in, max_step folded into the velocity limit) and refuses a config
 * whose operating limits exceed the hardware limits.
 *
 * Ownership: every pointer you pass is borrowed for the duration of the call only; the filter
 * copies what it keeps. vla_edge_filter_create gives you a handle to free with
 * vla_edge_filter_destroy. Strings returned by vla_edge_filter_last_error belong to the library
 * and stay valid until the next call on the same thread; those returned by
 * vla_edge_filter_detail stay valid until the next call on the same filter.
 *
 * Errors: functions return 0 (VLA_EDGE_FILTER_OK) on success and a negative code otherwise; then
 * vla_edge_filter_last_error() names the field and what was expected. No C++ exception crosses
 * this boundary. Bad *tick* input (NaN target, stale state, ...) is not an error: it is a hold,
 * reported through the intervention codes of the result.
 *
 * Thread safety: every function on one handle may be called from any thread (each call locks the
 * handle), so a timer thread can run vla_edge_filter_check_watchdog beside the control loop.
 *
 * Protocol per control period: call vla_edge_filter_step once with the policy's target for now;
 * if result.sent, send `command` to the arm; then, if result.stop_driver, call your driver's
 * controlled stop. If sending fails, call vla_edge_filter_send_failed and stop the driver.
 */
#ifndef VLA_EDGE_SAFETY_H
#define VLA_EDGE_SAFETY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#ifndef VLA_EDGE_API
#if defined(_WIN32)
#define VLA_EDGE_API __declspec(dllexport)
#else
#define VLA_EDGE_API __attribute__((visibility("default")))
#endif
#endif

#define VLA_EDGE_FILTER_OK 0                /* same value as VLA_EDGE_OK */
#define VLA_EDGE_FILTER_ERR_ARGUMENT (-1) /* NULL pointer or invalid configuration field */
#define VLA_EDGE_FILTER_ERR_REFUSED (-4)  /* the filter refused (resume after e-stop / while braking) */

#define VLA_EDGE_FILTER_MAX_DOF 64
#define VLA_EDGE_FILTER_MAX_INTERVENTIONS 8

/* Filter states (result.state). */
enum {
    VLA_EDGE_FILTER_RUNNING = 0,  /* targets are limited and followed */
    VLA_EDGE_FILTER_BRAKING = 1,  /* a fault was seen: each step emits the next braking command */
    VLA_EDGE_FILTER_STOPPED = 2,  /* nothing is emitted until vla_edge_filter_resume */
    VLA_EDGE_FILTER_ESTOPPED = 3, /* latched for the handle's lifetime */
};

/* Intervention codes; vla_edge_filter_code_name gives the stable text used in logs and Python. */
enum {
    VLA_EDGE_IV_POSITION_CLAMPED = 0,
    VLA_EDGE_IV_VELOCITY_LIMITED,
    VLA_EDGE_IV_TCP_SPEED,
    VLA_EDGE_IV_WORKSPACE,
    VLA_EDGE_IV_DECELERATING,
    VLA_EDGE_IV_MISSING_TARGET,
    VLA_EDGE_IV_BAD_TARGET,
    VLA_EDGE_IV_NON_FINITE_TARGET,
    VLA_EDGE_IV_OUT_OF_RANGE_TARGET,
    VLA_EDGE_IV_MISSING_TARGET_TIME,
    VLA_EDGE_IV_STALE_TARGET,
    VLA_EDGE_IV_FUTURE_TARGET,
    VLA_EDGE_IV_MISSING_STATE,
    VLA_EDGE_IV_BAD_STATE,
    VLA_EDGE_IV_NON_FINITE_STATE,
    VLA_EDGE_IV_STALE_STATE,
    VLA_EDGE_IV_STATE_OUT_OF_RANGE,
    VLA_EDGE_IV_TRACKING_ERROR,
    VLA_EDGE_IV_VELOCITY_SCALE_ZERO,
    VLA_EDGE_IV_INTERNAL_NON_FINITE,
    VLA_EDGE_IV_COUNT
};

/* Arm description kinds (vla_edge_filter_arm.kind). */
enum { VLA_EDGE_ARM_DH = 0, VLA_EDGE_ARM_CHAIN = 1 };

/* One arm's forward kinematics, as the YAML `kinematics.arms[k]` gives it. */
typedef struct {
    const int* joint_indices; /* n_joints indices into the robot's DOF vector */
    int n_joints;
    int kind; /* VLA_EDGE_ARM_DH: standard DH table; VLA_EDGE_ARM_CHAIN: URDF-style joint chain */
    const double* dh_a;            /* DH: n_joints each (m, rad) */
    const double* dh_alpha;
    const double* dh_d;
    const double* dh_theta_offset; /* DH: n_joints or NULL (zeros) */
    const double* chain_xyz;       /* CHAIN: n_joints * 3, origin of each joint in its parent */
    const double* chain_rpy;       /* CHAIN: n_joints * 3, fixed-axis roll-pitch-yaw */
    const double* chain_axis;      /* CHAIN: n_joints * 3, rotation axis (normalised here) */
    double base_xyz[3];            /* world <- arm base */
    double base_rpy[3];
    double tool_xyz[3];            /* flange -> TCP */
} vla_edge_filter_arm;

typedef struct {
    int index; /* DOF index of the gripper */
    double range_min, range_max; /* opening range (m) */
    double max_rate;             /* m/s */
} vla_edge_filter_gripper;

/* The robot YAML's limits; arrays have `dof` values unless said otherwise. */
typedef struct {
    int dof; /* 1..VLA_EDGE_FILTER_MAX_DOF */
    double control_rate_hz; /* one vla_edge_filter_step per 1/control_rate_hz seconds */
    double stale_after_s;   /* target/state older than this is not used; watchdog deadline */
    const double* hardware_position_min;
    const double* hardware_position_max;
    const double* hardware_velocity;
    const double* hardware_acceleration;
    double hardware_tcp_speed;
    const double* position_min; /* NULL: the hardware range */
    const double* position_max; /* NULL: the hardware range */
    double position_margin;     /* kept clear of the range ends (not for grippers) */
    const double* velocity;
    const double* acceleration;
    const double* max_step; /* NULL: no per-tick step cap */
    double tcp_speed;
    double tracking_error;
    double workspace_min[3];
    double workspace_max[3];
    const vla_edge_filter_gripper* grippers;
    int n_grippers;
    const vla_edge_filter_arm* arms;
    int n_arms;
} vla_edge_filter_config;

/* What one step did. `command` (your buffer of dof doubles) holds the filter's command whenever
 * has_command is 1: the new command when sent, else the last one (hold). */
typedef struct {
    int state;       /* VLA_EDGE_FILTER_* after this step */
    int has_command; /* 0 only before the first valid state was seen */
    int sent;        /* 1: a new command was emitted this step: send it (live) or log it (shadow) */
    int held;        /* 1: the target was not followed (braking, stopped, e-stopped, or a hold) */
    int stop_driver; /* 1: the filter came to rest: call your driver's controlled stop now */
    int n_interventions;
    int codes[VLA_EDGE_FILTER_MAX_INTERVENTIONS];        /* VLA_EDGE_IV_*, in the order they arose */
    uint64_t joints[VLA_EDGE_FILTER_MAX_INTERVENTIONS];  /* bit i: DOF i concerned (0: not per-joint) */
} vla_edge_filter_result;

typedef struct vla_edge_filter vla_edge_filter;

/* shadow = 1: commands are not sent to an arm, so the measured state is not expected to follow
 * them (no tracking_error check). *out receives the handle; on error it is set to NULL. */
VLA_EDGE_API int vla_edge_filter_create(const vla_edge_filter_config* config, int shadow, vla_edge_filter** out);
VLA_EDGE_API void vla_edge_filter_destroy(vla_edge_filter* filter);
VLA_EDGE_API int vla_edge_filter_dof(const vla_edge_filter* filter);

/* target: dof values or NULL (no target this tick); target_time: the time the target is meant
 * for (NAN: none); q: measured joint positions (dof) or NULL; state_time: when q was measured;
 * velocity_scale: (0, 1], anything else (<= 0, NAN) is a hold; now: the caller's clock, the same
 * clock as the timestamps. command: out, dof doubles. */
VLA_EDGE_API int vla_edge_filter_step(vla_edge_filter* filter, const double* target, double target_time,
                                      const double* q, double state_time, double velocity_scale, double now,
                                      double* command, vla_edge_filter_result* result);

/* Leave STOPPED: restart from the measured q at rest. REFUSED after e-stop, while braking, or when
 * the state is unusable (last_error says why); a no-op while running. */
VLA_EDGE_API int vla_edge_filter_resume(vla_edge_filter* filter, const double* q, double state_time, double now);

/* Controlled stop now. *stop_driver = 1 when the caller must stop its driver (it was not stopped). */
VLA_EDGE_API int vla_edge_filter_stop(vla_edge_filter* filter, int* stop_driver);

/* Latched emergency stop: nothing is emitted again. Call your driver's e-stop as well. */
VLA_EDGE_API int vla_edge_filter_estop(vla_edge_filter* filter);

/* Sending the last command failed: the filter forgets it and is STOPPED (stop your driver). */
VLA_EDGE_API int vla_edge_filter_send_failed(vla_edge_filter* filter);

/* *tripped = 1 (and the filter is STOPPED: stop your driver) when no step with a valid target and
 * state arrived within stale_after_s of `now`. Never trips before the first command. */
VLA_EDGE_API int vla_edge_filter_check_watchdog(vla_edge_filter* filter, double now, int* tripped);

VLA_EDGE_API int vla_edge_filter_state(const vla_edge_filter* filter);

/* Text of intervention i of the last step (what was changed and why); "" if out of range. */
VLA_EDGE_API const char* vla_edge_filter_detail(const vla_edge_filter* filter, int i);

VLA_EDGE_API const char* vla_edge_filter_code_name(int code);
VLA_EDGE_API const char* vla_edge_filter_state_name(int state);
VLA_EDGE_API const char* vla_edge_filter_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* VLA_EDGE_SAFETY_H */
