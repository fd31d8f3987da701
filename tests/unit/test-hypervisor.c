/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-hypervisor.c -- tests for daemon/hypervisor.c: deep copies of what
 * drivers hand to callbacks are independent of the original, and the
 * names of snapshot types and VM states go both ways.
 */
#include <stdlib.h>
#include <string.h>

#include "daemon/hypervisor.h"
#include "tests/unit/test.h"

TEST(hv_vm_copy_is_deep)
{
        vb_hv_disk disks[2] = {
                { .device = (char *)"vda", .path = (char *)"/vms/a.qcow2", .format = (char *)"qcow2", .size = 1 << 20 },
                { .device = (char *)"vdb", .path = (char *)"/vms/b.raw", .pool = (char *)"data" }
        };
        vb_hv_nic nic = { .mac = (char *)"0c:da:41:00:00:01", .vswitch = (char *)"vswitch0" };
        json_t *config = json_pack("{s:s}", "name", "web01");
        vb_hv_vm src = { .id = (char *)"12",
                         .name = (char *)"web01",
                         .title = (char *)"网站",
                         .host_id = (char *)"3",
                         .state = VB_VM_RUNNING,
                         .cpu_cores = 2,
                         .memory_mb = 512,
                         .disks = disks,
                         .n_disks = 2,
                         .nics = &nic,
                         .n_nics = 1,
                         .config = config };
        vb_hv_vm dst;

        ASSERT_OK(vb_hv_vm_copy(&src, &dst));
        ASSERT_TRUE(dst.name != src.name && dst.disks != src.disks && dst.config != src.config);
        ASSERT_STREQ(dst.title, "网站");
        ASSERT_TRUE(dst.uuid == NULL && dst.cluster_id == NULL);
        ASSERT_UEQ(dst.n_disks, 2);
        ASSERT_STREQ(dst.disks[1].pool, "data");
        ASSERT_TRUE(dst.disks[1].format == NULL);
        ASSERT_UEQ(dst.disks[0].size, 1 << 20);
        ASSERT_STREQ(dst.nics[0].mac, "0c:da:41:00:00:01");
        ASSERT_EQ(dst.state, VB_VM_RUNNING);
        /* The copy outlives the original's configuration. */
        json_object_set_new(config, "name", json_string("changed"));
        json_decref(config);
        ASSERT_STREQ(json_string_value(json_object_get(dst.config, "name")), "web01");
        vb_hv_vm_clear(&dst);
        ASSERT_TRUE(dst.name == NULL && dst.n_disks == 0);
        vb_hv_vm_clear(&dst); /* twice is harmless */
}

TEST(hv_snapshot_and_source_copies)
{
        vb_hv_snapshot s = { .name = (char *)"vbak-1", .type = VB_SNAPSHOT_EXTERNAL, .quiesced = true }, s2;
        vb_hv_disk_source d = { .url = (char *)"cvd://h:8192/vm/p", .since = (char *)"c1" }, d2;

        ASSERT_OK(vb_hv_snapshot_copy(&s, &s2));
        ASSERT_TRUE(s2.name != s.name && s2.quiesced && s2.note == NULL);
        ASSERT_STREQ(s2.name, "vbak-1");
        vb_hv_snapshot_clear(&s2);
        ASSERT_OK(vb_hv_disk_source_copy(&d, &d2));
        ASSERT_STREQ(d2.since, "c1");
        ASSERT_TRUE(d2.checkpoint == NULL && d2.url != d.url);
        vb_hv_disk_source_clear(&d2);
}

TEST(hv_names)
{
        for (int t = VB_SNAPSHOT_ADAPTIVE; t <= VB_SNAPSHOT_EXTERNAL; t++)
                ASSERT_EQ(vb_snapshot_type_from_string(vb_snapshot_type_to_string((vb_snapshot_type)t)), t);
        ASSERT_EQ(vb_snapshot_type_from_string("Internal"), -1);
        ASSERT_EQ(vb_snapshot_type_from_string(NULL), -1);
        ASSERT_STREQ(vb_snapshot_type_to_string((vb_snapshot_type)7), "unknown");
        ASSERT_STREQ(vb_vm_state_to_string(VB_VM_SHUT_OFF), "shut off");
        ASSERT_STREQ(vb_vm_state_to_string((vb_vm_state)42), "unknown");
}
