/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * driver.h -- the plain libvirt/KVM driver: the hypervisor interface
 * (daemon/hypervisor.h) on one libvirt connection (qemu:///system,
 * qemu+ssh://HOST/system, qemu+tls://HOST/system...), which is one host.
 *
 * DESIGN
 * - Every libvirt call blocks, so each operation runs on the loop's worker
 *   pool and calls back on the loop. One virConnect serves them all (libvirt
 *   connections are thread-safe); disconnect waits for the operations in
 *   flight.
 * - A backup of a running domain is a pull-mode backup job
 *   (virDomainBackupBegin): snapshot_create begins it with a scratch file
 *   beside each disk, incremental since the parent's checkpoint when the
 *   domain still has it, and creates the new checkpoint (named as the
 *   snapshot) atomically with it; disk_source answers the job's NBD export
 *   (a unix socket for a local URI, TCP on the host otherwise) with its
 *   dirty bitmap; snapshot_delete ends the job (virDomainAbortJob); and
 *   checkpoint_commit removes the parent's checkpoint once the restore point
 *   is committed, or the new one after a failure. The guest agent, when it
 *   answers, freezes the file systems around the job's start.
 * - A shut-off domain has no job: its disk files are read through the
 *   host's disk service (vbak-cvd, cvd:// like a CAS host), whose qemu-nbd
 *   exports them with their persistent bitmaps and which creates the new
 *   checkpoint's bitmaps offline; checkpoint_commit then tells libvirt of
 *   that checkpoint (a redefinition) so that the next backup of the running
 *   domain goes on from it.
 * - Restores define a domain from the captured inactive XML
 *   (libvirt/domxml.h), create volumes in the host's storage pools, and
 *   write them through the disk service.
 * - Messages name the URI, the domain and the step:
 *   "libvirt qemu:///system: vm web1: backup begin: <libvirt's message>".
 */
#ifndef VB_LIBVIRT_H
#define VB_LIBVIRT_H

#include "daemon/hypervisor.h"

/* The disk service's default port on a libvirt host (as on CAS hosts). */
#define LV_CVD_PORT_DEFAULT 8192
/* How long a safe shutdown may take before power() gives up. */
#define LV_SHUTDOWN_TIMEOUT_MS (5u * 60u * 1000u)
/* TCP ports a remote host's backup export may listen on. */
#define LV_NBD_PORT_MIN 10809u
#define LV_NBD_PORT_SPAN 200u

extern const vb_hv_driver libvirt_driver;

#endif
