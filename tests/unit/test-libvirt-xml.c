/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * test-libvirt-xml.c -- tests for libvirt/domxml.c: a running domain's XML
 * as virsh dumpxml shows it read field by field; the captured
 * configuration rewritten for a restore with every setting (checked by
 * reading the result back and by XPath); a disk pointed at a new file;
 * the backup, checkpoint, volume and disk XML written and read back, with
 * names and paths holding characters XML must escape.
 */
#include <errno.h>
#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/util.h"
#include "libvirt/domxml.h"
#include "tests/unit/test.h"

/* A running domain, as `virsh dumpxml` prints it (ids, aliases and the
 * dynamic labels of the running domain included). */
static const char domain_xml[] =
        "<domain type='kvm' id='7'>\n"
        "  <name>web01</name>\n"
        "  <uuid>4dea22b3-1d52-d8f3-2516-782e98ab3fa0</uuid>\n"
        "  <title>网站服务器 &amp; 数据库</title>\n"
        "  <description>front end</description>\n"
        "  <memory unit='KiB'>4194304</memory>\n"
        "  <currentMemory unit='KiB'>2097152</currentMemory>\n"
        "  <vcpu placement='static' current='4'>8</vcpu>\n"
        "  <resource>\n"
        "    <partition>/machine</partition>\n"
        "  </resource>\n"
        "  <os>\n"
        "    <type arch='x86_64' machine='pc-q35-7.2'>hvm</type>\n"
        "    <boot dev='hd'/>\n"
        "  </os>\n"
        "  <features>\n"
        "    <acpi/>\n"
        "    <apic/>\n"
        "  </features>\n"
        "  <cpu mode='custom' match='exact' check='full'>\n"
        "    <model fallback='forbid'>Skylake-Client-IBRS</model>\n"
        "    <vendor>Intel</vendor>\n"
        "    <topology sockets='2' dies='1' cores='4' threads='1'/>\n"
        "    <feature policy='require' name='ssbd'/>\n"
        "  </cpu>\n"
        "  <clock offset='utc'/>\n"
        "  <on_poweroff>destroy</on_poweroff>\n"
        "  <devices>\n"
        "    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n"
        "    <disk type='file' device='disk'>\n"
        "      <driver name='qemu' type='qcow2'/>\n"
        "      <source file='/var/lib/libvirt/images/web01.qcow2' index='2'/>\n"
        "      <backingStore type='file' index='3'>\n"
        "        <format type='qcow2'/>\n"
        "        <source file='/var/lib/libvirt/images/base.qcow2'/>\n"
        "        <backingStore/>\n"
        "      </backingStore>\n"
        "      <target dev='vda' bus='virtio'/>\n"
        "      <alias name='virtio-disk0'/>\n"
        "      <address type='pci' domain='0x0000' bus='0x04' slot='0x00' function='0x0'/>\n"
        "    </disk>\n"
        "    <disk type='block' device='disk'>\n"
        "      <driver name='qemu' type='raw' cache='none' io='native'/>\n"
        "      <source dev='/dev/vg0/web01-data' index='1'/>\n"
        "      <backingStore/>\n"
        "      <target dev='sda' bus='sata'/>\n"
        "      <alias name='sata0-0-0'/>\n"
        "      <address type='drive' controller='0' bus='0' target='0' unit='0'/>\n"
        "    </disk>\n"
        "    <disk type='file' device='cdrom'>\n"
        "      <driver name='qemu' type='raw'/>\n"
        "      <source file='/iso/debian-12.iso'/>\n"
        "      <target dev='sdb' bus='sata'/>\n"
        "      <readonly/>\n"
        "      <alias name='sata0-0-1'/>\n"
        "    </disk>\n"
        "    <controller type='sata' index='0'>\n"
        "      <alias name='ide'/>\n"
        "    </controller>\n"
        "    <interface type='network'>\n"
        "      <mac address='52:54:00:6b:3c:58'/>\n"
        "      <source network='default' portgroup='web' portid='6c7e9b65-ffd7-4ba8-93a4-4e2ab2b1e5bb' "
        "bridge='virbr0'/>\n"
        "      <target dev='vnet3'/>\n"
        "      <model type='virtio'/>\n"
        "      <alias name='net0'/>\n"
        "    </interface>\n"
        "    <interface type='bridge'>\n"
        "      <mac address='52:54:00:aa:bb:cc'/>\n"
        "      <source bridge='br-storage'/>\n"
        "      <model type='e1000e'/>\n"
        "      <alias name='net1'/>\n"
        "    </interface>\n"
        "    <graphics type='vnc' port='5900' autoport='yes' listen='127.0.0.1'/>\n"
        "  </devices>\n"
        "  <seclabel type='dynamic' model='selinux' relabel='yes'>\n"
        "    <label>system_u:system_r:svirt_t:s0:c100,c200</label>\n"
        "    <imagelabel>system_u:object_r:svirt_image_t:s0:c100,c200</imagelabel>\n"
        "  </seclabel>\n"
        "  <seclabel type='dynamic' model='dac' relabel='yes'>\n"
        "    <label>+107:+107</label>\n"
        "    <imagelabel>+107:+107</imagelabel>\n"
        "  </seclabel>\n"
        "</domain>\n";

/* ---- helpers ---- */

static xmlDoc *read_doc(const char *xml)
{
        xmlDoc *doc = xmlReadMemory(xml, (int)strlen(xml), "t.xml", NULL, XML_PARSE_NONET | XML_PARSE_NOBLANKS);

        if (!doc)
                TEST_FAIL_("not well-formed XML:\n%s", xml);
        return doc;
}

/* The XPath expression's value as a string (caller frees). */
static char *xp_str(const char *xml, const char *expr)
{
        xmlDoc *doc = read_doc(xml);
        xmlXPathContext *ctx = xmlXPathNewContext(doc);
        xmlXPathObject *o;
        xmlChar *v;
        char *s;

        ASSERT_TRUE(ctx != NULL);
        o = xmlXPathEvalExpression(BAD_CAST expr, ctx);
        if (!o)
                TEST_FAIL_("bad XPath %s", expr);
        v = xmlXPathCastToString(o);
        s = strdup((const char *)v);
        xmlFree(v);
        xmlXPathFreeObject(o);
        xmlXPathFreeContext(ctx);
        xmlFreeDoc(doc);
        return s;
}

/* The XPath expression's value as a number, e.g. count(...). */
static long xp_num(const char *xml, const char *expr)
{
        _cleanup_free_ char *s = xp_str(xml, expr);

        return strtol(s, NULL, 10);
}

#define ASSERT_XP(xml, expr, want)                                                                                     \
        do {                                                                                                           \
                _cleanup_free_ char *v_ = xp_str((xml), (expr));                                                       \
                if (strcmp(v_, (want)) != 0)                                                                           \
                        TEST_FAIL_("%s: \"%s\" != \"%s\" in\n%s", (expr), v_, (want), (xml));                          \
        } while (0)

static void parse_ok(const char *xml, vb_hv_vm *vm)
{
        _cleanup_free_ char *err = NULL;
        int r = lv_domain_parse(xml, vm, &err);

        if (r < 0)
                TEST_FAIL_("lv_domain_parse: %d %s\n%s", r, err ?: "", xml);
        ASSERT_TRUE(err == NULL);
}

/* The captured configuration of domain_xml, as the driver makes it. */
static json_t *captured(void)
{
        vb_hv_vm vm = {};
        json_t *c;

        parse_ok(domain_xml, &vm);
        vm.disks[0].pool = strdup("default");
        ASSERT_TRUE(vm.disks[0].pool != NULL);
        c = lv_config_capture(domain_xml, &vm);
        ASSERT_TRUE(c != NULL);
        vb_hv_vm_clear(&vm);
        return c;
}

static const char *disk_key(const json_t *config, size_t i, const char *key)
{
        return json_string_value(json_object_get(json_array_get(json_object_get(config, "disks"), i), key));
}

/* ---- domains ---- */

TEST(domain_parse_every_field)
{
        vb_hv_vm vm = {};

        parse_ok(domain_xml, &vm);
        ASSERT_STREQ(vm.id, "4dea22b3-1d52-d8f3-2516-782e98ab3fa0");
        ASSERT_STREQ(vm.uuid, "4dea22b3-1d52-d8f3-2516-782e98ab3fa0");
        ASSERT_STREQ(vm.name, "web01");
        ASSERT_STREQ(vm.title, "网站服务器 & 数据库");
        ASSERT_EQ(vm.cpu_sockets, 2);
        ASSERT_EQ(vm.cpu_cores, 4);
        ASSERT_UEQ(vm.memory_mb, 4096);
        ASSERT_TRUE(vm.host_id == NULL && vm.config == NULL && vm.state == VB_VM_UNKNOWN);

        /* The cdrom is not a disk of the VM. */
        ASSERT_UEQ(vm.n_disks, 2);
        ASSERT_STREQ(vm.disks[0].device, "vda");
        ASSERT_STREQ(vm.disks[0].path, "/var/lib/libvirt/images/web01.qcow2");
        ASSERT_STREQ(vm.disks[0].format, "qcow2");
        ASSERT_STREQ(vm.disks[0].bus, "virtio");
        ASSERT_TRUE(vm.disks[0].pool == NULL);
        ASSERT_UEQ(vm.disks[0].size, 0);
        ASSERT_STREQ(vm.disks[1].device, "sda");
        ASSERT_STREQ(vm.disks[1].path, "/dev/vg0/web01-data");
        ASSERT_STREQ(vm.disks[1].format, "raw");
        ASSERT_STREQ(vm.disks[1].bus, "sata");

        ASSERT_UEQ(vm.n_nics, 2);
        ASSERT_STREQ(vm.nics[0].mac, "52:54:00:6b:3c:58");
        ASSERT_STREQ(vm.nics[0].vswitch, "default");
        ASSERT_STREQ(vm.nics[0].profile, "web");
        ASSERT_STREQ(vm.nics[0].model, "virtio");
        ASSERT_STREQ(vm.nics[1].mac, "52:54:00:aa:bb:cc");
        ASSERT_STREQ(vm.nics[1].vswitch, "br-storage");
        ASSERT_TRUE(vm.nics[1].profile == NULL);
        ASSERT_STREQ(vm.nics[1].model, "e1000e");

        /* A second parse into the same vm replaces what was there. */
        parse_ok("<domain><name>x</name></domain>", &vm);
        ASSERT_STREQ(vm.name, "x");
        ASSERT_STREQ(vm.title, "x");
        ASSERT_TRUE(vm.uuid == NULL && vm.id == NULL);
        ASSERT_UEQ(vm.n_disks, 0);
        ASSERT_UEQ(vm.n_nics, 0);
        ASSERT_EQ(vm.cpu_sockets, 1);
        ASSERT_EQ(vm.cpu_cores, 1);
        ASSERT_UEQ(vm.memory_mb, 0);
        vb_hv_vm_clear(&vm);
}

TEST(domain_parse_vcpu_volumes_network_disks)
{
        vb_hv_vm vm = {};

        parse_ok("<domain type='kvm'><name>db</name><memory>1048576</memory><vcpu>6</vcpu><devices>"
                 "<disk type='volume' device='disk'><driver name='qemu' type='qcow2'/>"
                 "<source pool='ssd' volume='db.qcow2'/><target dev='vdc' bus='virtio'/></disk>"
                 "<disk type='network' device='disk'><source protocol='rbd' name='pool/img'/>"
                 "<target dev='vdd' bus='virtio'/></disk>"
                 "<disk type='file'><source file='/x.img'/><target dev='hda'/></disk>"
                 "<interface type='user'><mac address='52:54:00:00:00:01'/></interface>"
                 "</devices></domain>",
                 &vm);
        /* No topology: <vcpu> sockets of one core. */
        ASSERT_EQ(vm.cpu_sockets, 6);
        ASSERT_EQ(vm.cpu_cores, 1);
        /* KiB by default. */
        ASSERT_UEQ(vm.memory_mb, 1024);
        ASSERT_UEQ(vm.n_disks, 2);
        ASSERT_STREQ(vm.disks[0].device, "vdc");
        ASSERT_STREQ(vm.disks[0].pool, "ssd");
        ASSERT_TRUE(vm.disks[0].path == NULL);
        ASSERT_STREQ(vm.disks[0].format, "qcow2");
        /* device defaults to disk; no driver type: raw; no bus. */
        ASSERT_STREQ(vm.disks[1].device, "hda");
        ASSERT_STREQ(vm.disks[1].path, "/x.img");
        ASSERT_STREQ(vm.disks[1].format, "raw");
        ASSERT_TRUE(vm.disks[1].bus == NULL && vm.disks[1].pool == NULL);
        ASSERT_UEQ(vm.n_nics, 1);
        ASSERT_STREQ(vm.nics[0].mac, "52:54:00:00:00:01");
        ASSERT_TRUE(vm.nics[0].vswitch == NULL && vm.nics[0].model == NULL);
        vb_hv_vm_clear(&vm);
}

TEST(domain_parse_memory_units)
{
        static const struct {
                const char *unit;
                uint64_t value, mb;
        } cases[] = {
                { "b", 3ULL << 30, 3072 }, { "bytes", 1ULL << 20, 1 }, { "KB", 2097152, 2000 }, { "k", 1048576, 1024 },
                { "KiB", 2048, 2 },        { "MB", 1048576, 1000000 }, { "M", 512, 512 },       { "MiB", 4096, 4096 },
                { "GB", 1, 953 },          { "G", 3, 3072 },           { "GiB", 16, 16384 },    { "TB", 1, 953674 },
                { "T", 2, 2097152 },       { "TiB", 1, 1048576 },      { "mib", 7, 7 },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *xml = NULL;
                vb_hv_vm vm = {};

                ASSERT_TRUE(asprintf(&xml, "<domain><name>m</name><memory unit='%s'>%llu</memory></domain>",
                                     cases[i].unit, (unsigned long long)cases[i].value) > 0);
                parse_ok(xml, &vm);
                if (vm.memory_mb != cases[i].mb)
                        TEST_FAIL_("unit %s: %" PRIu64 " MiB, want %" PRIu64, cases[i].unit, vm.memory_mb, cases[i].mb);
                vb_hv_vm_clear(&vm);
        }
}

static void parse_fails(const char *xml)
{
        _cleanup_free_ char *err = NULL;
        vb_hv_vm vm = {};

        ASSERT_ERR(lv_domain_parse(xml, &vm, &err), EINVAL);
        if (!err || !*err)
                TEST_FAIL_("no explanation for %s", xml);
        ASSERT_TRUE(vm.name == NULL && vm.disks == NULL);
}

TEST(domain_parse_refuses)
{
        parse_fails("<pool type='dir'><name>default</name></pool>");
        parse_fails("<domain><name>x</name>");
        parse_fails("");
        parse_fails("<domain><uuid>u</uuid></domain>");
        parse_fails("<domain><name>x</name><memory unit='parsec'>1</memory></domain>");
        parse_fails("<domain><name>x</name><memory>lots</memory></domain>");
        parse_fails("<domain><name>x</name><vcpu>0</vcpu></domain>");
        parse_fails("<!DOCTYPE d [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;\">]>"
                    "<domain><name>&b;</name></domain>");
        /* err may be NULL. */
        vb_hv_vm vm = {};
        ASSERT_ERR(lv_domain_parse("<x/>", &vm, NULL), EINVAL);
}

/* ---- the captured configuration ---- */

TEST(config_capture)
{
        json_t *c = captured();

        ASSERT_STREQ(lv_config_xml(c), domain_xml);
        ASSERT_UEQ(json_array_size(json_object_get(c, "disks")), 2);
        ASSERT_STREQ(disk_key(c, 0, "device"), "vda");
        ASSERT_STREQ(disk_key(c, 0, "format"), "qcow2");
        ASSERT_STREQ(disk_key(c, 0, "bus"), "virtio");
        ASSERT_STREQ(disk_key(c, 0, "pool"), "default");
        ASSERT_STREQ(disk_key(c, 1, "path"), "/dev/vg0/web01-data");
        /* Unknown values are null, not missing. */
        ASSERT_TRUE(json_is_null(json_object_get(json_array_get(json_object_get(c, "disks"), 1), "pool")));
        ASSERT_TRUE(lv_config_xml(NULL) == NULL);
        json_decref(c);
}

TEST(config_new_new_vm)
{
        json_t *c = captured(), *n;
        vb_hv_vm_settings s = { .name = "web01-restored", .host_id = "h1" };
        vb_hv_vm vm = {};
        const char *xml;

        n = lv_config_new(c, &s);
        ASSERT_TRUE(n != NULL);
        xml = lv_config_xml(n);
        ASSERT_TRUE(xml != NULL);
        parse_ok(xml, &vm);
        ASSERT_STREQ(vm.name, "web01-restored");
        ASSERT_STREQ(vm.title, "web01-restored");
        ASSERT_TRUE(vm.uuid == NULL && vm.id == NULL);
        /* New MAC addresses: libvirt picks them. */
        ASSERT_UEQ(vm.n_nics, 2);
        ASSERT_TRUE(vm.nics[0].mac == NULL && vm.nics[1].mac == NULL);
        ASSERT_STREQ(vm.nics[0].vswitch, "default");
        ASSERT_STREQ(vm.nics[1].vswitch, "br-storage");
        /* Everything else as captured. */
        ASSERT_EQ(vm.cpu_sockets, 2);
        ASSERT_EQ(vm.cpu_cores, 4);
        ASSERT_UEQ(vm.memory_mb, 4096);
        ASSERT_UEQ(vm.n_disks, 2);
        ASSERT_STREQ(vm.disks[1].path, "/dev/vg0/web01-data");
        ASSERT_XP(xml, "/domain/cpu/@mode", "custom");
        ASSERT_XP(xml, "/domain/cpu/model", "Skylake-Client-IBRS");
        ASSERT_XP(xml, "/domain/vcpu/@current", "4");
        ASSERT_EQ(xp_num(xml, "count(/domain/devices/disk)"), 3);
        /* What only the running domain had is gone. */
        ASSERT_EQ(xp_num(xml, "count(//uuid)"), 0);
        ASSERT_EQ(xp_num(xml, "count(/domain/@id)"), 0);
        ASSERT_XP(xml, "/domain/@type", "kvm");
        ASSERT_EQ(xp_num(xml, "count(/domain/devices/disk/alias)"), 0);
        ASSERT_EQ(xp_num(xml, "count(/domain/devices/interface/alias)"), 0);
        ASSERT_EQ(xp_num(xml, "count(/domain/seclabel)"), 0);
        /* libvirt's own form: no declaration, the title readable. */
        ASSERT_TRUE(strncmp(xml, "<domain", 7) == 0);
        ASSERT_TRUE(strstr(xml, "<title>网站服务器") == NULL);
        ASSERT_TRUE(strstr(xml, "web01-restored</title>") != NULL);
        /* The disks, copied. */
        ASSERT_UEQ(json_array_size(json_object_get(n, "disks")), 2);
        ASSERT_TRUE(json_array_get(json_object_get(n, "disks"), 0) != json_array_get(json_object_get(c, "disks"), 0));
        ASSERT_STREQ(disk_key(n, 0, "pool"), "default");
        /* The captured configuration is untouched. */
        ASSERT_STREQ(lv_config_xml(c), domain_xml);
        vb_hv_vm_clear(&vm);
        json_decref(n);
        json_decref(c);
}

TEST(config_new_keep_identity_and_title)
{
        json_t *c = captured(), *n;
        vb_hv_vm_settings s = { .name = "web01", .title = "网站服务器 & 数据库", .keep_identity = true };
        vb_hv_vm vm = {};

        n = lv_config_new(c, &s);
        ASSERT_TRUE(n != NULL);
        parse_ok(lv_config_xml(n), &vm);
        ASSERT_STREQ(vm.title, "网站服务器 & 数据库");
        ASSERT_TRUE(vm.uuid == NULL);
        ASSERT_STREQ(vm.nics[0].mac, "52:54:00:6b:3c:58");
        ASSERT_STREQ(vm.nics[1].mac, "52:54:00:aa:bb:cc");
        ASSERT_TRUE(strstr(lv_config_xml(n), "网站服务器 &amp; 数据库") != NULL);
        vb_hv_vm_clear(&vm);
        json_decref(n);

        /* A domain without a title gets one, after its name. */
        json_object_set_new(c, "xml",
                            json_string("<domain><name>a</name><uuid>u</uuid><memory>1024</memory>"
                                        "<vcpu>1</vcpu></domain>"));
        s = (vb_hv_vm_settings){ .name = "b" };
        n = lv_config_new(c, &s);
        ASSERT_TRUE(n != NULL);
        ASSERT_XP(lv_config_xml(n), "/domain/*[2]", "b");
        ASSERT_XP(lv_config_xml(n), "name(/domain/*[2])", "title");
        ASSERT_EQ(xp_num(lv_config_xml(n), "count(/domain/uuid)"), 0);
        json_decref(n);
        json_decref(c);
}

TEST(config_new_static_seclabel_stays)
{
        json_t *c = json_pack("{s:s, s:[]}", "xml",
                              "<domain><name>a</name><seclabel type='static' model='selinux' relabel='no'>"
                              "<label>system_u:system_r:svirt_t:s0:c1,c2</label></seclabel>"
                              "<seclabel type='dynamic' model='dac' relabel='yes'/></domain>",
                              "disks");
        vb_hv_vm_settings s = { .name = "b" };
        json_t *n = lv_config_new(c, &s);

        ASSERT_TRUE(n != NULL);
        ASSERT_EQ(xp_num(lv_config_xml(n), "count(/domain/seclabel)"), 2);
        json_decref(n);
        json_decref(c);
}

static json_t *new_with(json_t *c, const vb_hv_vm_settings *s, vb_hv_vm *vm)
{
        json_t *n = lv_config_new(c, s);

        if (!n)
                TEST_FAIL_("lv_config_new: %s", strerror(errno));
        parse_ok(lv_config_xml(n), vm);
        return n;
}

TEST(config_new_cpu)
{
        json_t *c = captured(), *n;
        vb_hv_vm vm = {};
        const char *xml;

        /* Sockets only: the captured cores stay. */
        n = new_with(c, &(vb_hv_vm_settings){ .name = "a", .cpu_sockets = 4 }, &vm);
        xml = lv_config_xml(n);
        ASSERT_EQ(vm.cpu_sockets, 4);
        ASSERT_EQ(vm.cpu_cores, 4);
        ASSERT_XP(xml, "normalize-space(/domain/vcpu)", "16");
        ASSERT_XP(xml, "/domain/vcpu/@placement", "static");
        ASSERT_EQ(xp_num(xml, "count(/domain/vcpu/@current)"), 0);
        ASSERT_EQ(xp_num(xml, "count(/domain/cpu/topology)"), 1);
        ASSERT_XP(xml, "/domain/cpu/topology/@dies", "1");
        ASSERT_XP(xml, "/domain/cpu/topology/@threads", "1");
        /* The model stays without a mode setting. */
        ASSERT_XP(xml, "/domain/cpu/model", "Skylake-Client-IBRS");
        vb_hv_vm_clear(&vm);
        json_decref(n);

        /* Host-match: host-model, no model of its own. */
        n = new_with(c, &(vb_hv_vm_settings){ .name = "a", .cpu_cores = 2, .cpu_mode = "host-match" }, &vm);
        xml = lv_config_xml(n);
        ASSERT_EQ(vm.cpu_sockets, 2);
        ASSERT_EQ(vm.cpu_cores, 2);
        ASSERT_XP(xml, "/domain/cpu/@mode", "host-model");
        ASSERT_EQ(xp_num(xml, "count(/domain/cpu/model | /domain/cpu/feature | /domain/cpu/vendor)"), 0);
        ASSERT_EQ(xp_num(xml, "count(/domain/cpu/@match | /domain/cpu/@check)"), 0);
        ASSERT_XP(xml, "normalize-space(/domain/vcpu)", "4");
        vb_hv_vm_clear(&vm);
        json_decref(n);

        n = new_with(c, &(vb_hv_vm_settings){ .name = "a", .cpu_mode = "passthrough" }, &vm);
        xml = lv_config_xml(n);
        ASSERT_XP(xml, "/domain/cpu/@mode", "host-passthrough");
        ASSERT_EQ(xp_num(xml, "count(/domain/cpu/model | /domain/cpu/feature)"), 0);
        /* The topology is kept. */
        ASSERT_EQ(vm.cpu_sockets, 2);
        ASSERT_EQ(vm.cpu_cores, 4);
        vb_hv_vm_clear(&vm);
        json_decref(n);

        /* Compatible: the captured model in custom mode. */
        n = new_with(c, &(vb_hv_vm_settings){ .name = "a", .cpu_mode = "compatible" }, &vm);
        xml = lv_config_xml(n);
        ASSERT_XP(xml, "/domain/cpu/@mode", "custom");
        ASSERT_XP(xml, "/domain/cpu/model", "Skylake-Client-IBRS");
        vb_hv_vm_clear(&vm);
        json_decref(n);
        json_decref(c);

        /* Compatible without a captured model: no mode at all. */
        c = json_pack("{s:s, s:[]}", "xml",
                      "<domain><name>a</name><vcpu>2</vcpu><cpu mode='host-passthrough' migratable='on'/></domain>",
                      "disks");
        n = new_with(c, &(vb_hv_vm_settings){ .name = "b", .cpu_mode = "compatible" }, &vm);
        xml = lv_config_xml(n);
        ASSERT_EQ(xp_num(xml, "count(/domain/cpu)"), 1);
        ASSERT_EQ(xp_num(xml, "count(/domain/cpu/@mode | /domain/cpu/@migratable)"), 0);
        ASSERT_EQ(vm.cpu_sockets, 2);
        vb_hv_vm_clear(&vm);
        json_decref(n);

        /* Cores only, no captured topology: <vcpu> sockets, and a <cpu>. */
        json_object_set_new(c, "xml", json_string("<domain><name>a</name><vcpu>3</vcpu></domain>"));
        n = new_with(c, &(vb_hv_vm_settings){ .name = "b", .cpu_cores = 2, .cpu_mode = "passthrough" }, &vm);
        xml = lv_config_xml(n);
        ASSERT_EQ(vm.cpu_sockets, 3);
        ASSERT_EQ(vm.cpu_cores, 2);
        ASSERT_XP(xml, "normalize-space(/domain/vcpu)", "6");
        ASSERT_XP(xml, "/domain/cpu/@mode", "host-passthrough");
        vb_hv_vm_clear(&vm);
        json_decref(n);
        json_decref(c);
}

TEST(config_new_unknown_cpu_mode)
{
        json_t *c = captured();

        errno = 0;
        ASSERT_TRUE(lv_config_new(c, &(vb_hv_vm_settings){ .name = "a", .cpu_mode = "host-model" }) == NULL);
        ASSERT_EQ(errno, EINVAL);
        errno = 0;
        ASSERT_TRUE(lv_config_new(c, &(vb_hv_vm_settings){ .name = "a", .cpu_mode = "" }) == NULL);
        ASSERT_EQ(errno, EINVAL);
        /* No XML in the configuration. */
        errno = 0;
        ASSERT_TRUE(lv_config_new(json_object_get(c, "disks"), &(vb_hv_vm_settings){ .name = "a" }) == NULL);
        ASSERT_EQ(errno, EINVAL);
        json_decref(c);
}

TEST(config_new_memory)
{
        json_t *c = captured(), *n;
        vb_hv_vm vm = {};
        const char *xml;

        n = new_with(c, &(vb_hv_vm_settings){ .name = "a", .memory_mb = 6144 }, &vm);
        xml = lv_config_xml(n);
        ASSERT_UEQ(vm.memory_mb, 6144);
        ASSERT_EQ(xp_num(xml, "count(/domain/memory)"), 1);
        ASSERT_EQ(xp_num(xml, "count(/domain/currentMemory)"), 1);
        ASSERT_XP(xml, "/domain/memory/@unit", "MiB");
        ASSERT_XP(xml, "/domain/currentMemory/@unit", "MiB");
        ASSERT_XP(xml, "/domain/currentMemory", "6144");
        vb_hv_vm_clear(&vm);
        json_decref(n);
        json_decref(c);
}

TEST(config_new_nics)
{
        json_t *c = captured(), *n;
        vb_hv_nic_setting nics[] = { { .vswitch = "prod", .profile = "vlan10" }, { .vswitch = "back&up" } };
        vb_hv_vm vm = {};
        const char *xml;

        n = new_with(
                c,
                &(vb_hv_vm_settings){ .name = "a", .keep_identity = true, .nics = nics, .n_nics = 2, .nics_set = true },
                &vm);
        xml = lv_config_xml(n);
        ASSERT_UEQ(vm.n_nics, 2);
        ASSERT_STREQ(vm.nics[0].vswitch, "prod");
        ASSERT_STREQ(vm.nics[0].profile, "vlan10");
        ASSERT_STREQ(vm.nics[0].model, "virtio");
        ASSERT_TRUE(vm.nics[0].mac == NULL);
        ASSERT_STREQ(vm.nics[1].vswitch, "back&up");
        ASSERT_TRUE(vm.nics[1].profile == NULL);
        ASSERT_EQ(xp_num(xml, "count(/domain/devices/interface[@type='network'])"), 2);
        ASSERT_EQ(xp_num(xml, "count(//interface/source/@bridge)"), 0);
        vb_hv_vm_clear(&vm);
        json_decref(n);

        /* No NICs at all. */
        n = new_with(c, &(vb_hv_vm_settings){ .name = "a", .nics_set = true }, &vm);
        ASSERT_UEQ(vm.n_nics, 0);
        ASSERT_UEQ(vm.n_disks, 2);
        vb_hv_vm_clear(&vm);
        json_decref(n);

        /* A NIC without a switch cannot be made. */
        nics[1].vswitch = NULL;
        errno = 0;
        ASSERT_TRUE(lv_config_new(c, &(vb_hv_vm_settings){
                                             .name = "a", .nics = nics, .n_nics = 2, .nics_set = true }) == NULL);
        ASSERT_EQ(errno, EINVAL);
        json_decref(c);
}

TEST(config_new_devices)
{
        const char *const keep[] = { "sda" };
        json_t *c = captured(), *n;
        vb_hv_vm vm = {};
        const char *xml;

        n = new_with(c, &(vb_hv_vm_settings){ .name = "a", .devices = keep, .n_devices = 1 }, &vm);
        xml = lv_config_xml(n);
        ASSERT_UEQ(vm.n_disks, 1);
        ASSERT_STREQ(vm.disks[0].device, "sda");
        /* The cdrom stays. */
        ASSERT_EQ(xp_num(xml, "count(/domain/devices/disk[@device='cdrom'])"), 1);
        ASSERT_EQ(xp_num(xml, "count(//target[@dev='vda'])"), 0);
        ASSERT_UEQ(json_array_size(json_object_get(n, "disks")), 1);
        ASSERT_STREQ(disk_key(n, 0, "device"), "sda");
        vb_hv_vm_clear(&vm);
        json_decref(n);
        json_decref(c);
}

TEST(config_disk)
{
        json_t *c = captured(), *n;
        vb_hv_disk was = {};
        vb_hv_vm vm = {};
        const char *xml;

        n = lv_config_new(c, &(vb_hv_vm_settings){ .name = "a" });
        ASSERT_TRUE(n != NULL);

        /* What the disk was, borrowed from the configuration. */
        ASSERT_OK(lv_config_disk(n, "vda", NULL, NULL, &was));
        ASSERT_STREQ(was.device, "vda");
        ASSERT_STREQ(was.path, "/var/lib/libvirt/images/web01.qcow2");
        ASSERT_STREQ(was.format, "qcow2");
        ASSERT_STREQ(was.bus, "virtio");
        ASSERT_STREQ(was.pool, "default");
        ASSERT_UEQ(was.size, 0);
        ASSERT_TRUE(was.path == disk_key(n, 0, "path"));

        /* The block disk becomes a file, in a pool. */
        ASSERT_OK(lv_config_disk(n, "sda", "/restore/it's & here.raw", "restored", &was));
        ASSERT_STREQ(was.device, "sda");
        ASSERT_TRUE(was.pool == NULL);
        ASSERT_STREQ(disk_key(n, 1, "path"), "/restore/it's & here.raw");
        ASSERT_STREQ(disk_key(n, 1, "pool"), "restored");
        xml = lv_config_xml(n);
        ASSERT_XP(xml, "/domain/devices/disk[target/@dev='sda']/@type", "file");
        ASSERT_EQ(xp_num(xml, "count(/domain/devices/disk[target/@dev='sda']/source)"), 1);
        ASSERT_EQ(xp_num(xml, "count(/domain/devices/disk[target/@dev='sda']/backingStore)"), 0);
        ASSERT_XP(xml, "/domain/devices/disk[target/@dev='sda']/driver/@type", "raw");
        parse_ok(xml, &vm);
        ASSERT_STREQ(vm.disks[1].path, "/restore/it's & here.raw");
        vb_hv_vm_clear(&vm);

        /* A qcow2 disk loses its backing chain; a pool alone changes no XML. */
        ASSERT_OK(lv_config_disk(n, "vda", "/new/vda.qcow2", NULL, NULL));
        xml = lv_config_xml(n);
        ASSERT_EQ(xp_num(xml, "count(//backingStore)"), 0);
        ASSERT_XP(xml, "/domain/devices/disk[target/@dev='vda']/source/@file", "/new/vda.qcow2");
        ASSERT_STREQ(disk_key(n, 0, "pool"), "default");
        ASSERT_OK(lv_config_disk(n, "vda", NULL, "other", NULL));
        ASSERT_STREQ(disk_key(n, 0, "pool"), "other");
        ASSERT_TRUE(xml == lv_config_xml(n));

        /* No such disk: the cdrom is not one. */
        ASSERT_ERR(lv_config_disk(n, "sdb", "/x", NULL, NULL), ENOENT);
        ASSERT_ERR(lv_config_disk(n, "vdz", NULL, NULL, &was), ENOENT);
        ASSERT_ERR(lv_config_disk(json_object_get(n, "disks"), "vda", NULL, NULL, NULL), EINVAL);
        json_decref(n);
        json_decref(c);
}

/* ---- backups and checkpoints ---- */

TEST(backup_xml_unix_round_trip)
{
        const lv_backup_disk disks[] = {
                { .device = "vda", .since = "cp3", .scratch = "/tmp/lvt/d1.qcow2.s1.scratch" },
                { .device = "vdb", .skip = true },
                { .device = "sda", .scratch = "/tmp/it's & <odd>.scratch" },
        };
        _cleanup_free_ char *xml = lv_backup_xml("/run/vbak/b&'1.sock", NULL, 0, disks, 3), *err = NULL;
        lv_backup_info info;
        const lv_backup_export *e;

        ASSERT_TRUE(xml != NULL);
        ASSERT_XP(xml, "/domainbackup/@mode", "pull");
        ASSERT_XP(xml, "/domainbackup/server/@transport", "unix");
        ASSERT_XP(xml, "/domainbackup/disks/disk[@name='vda']/@backupmode", "incremental");
        ASSERT_XP(xml, "/domainbackup/disks/disk[@name='vda']/@type", "file");
        ASSERT_XP(xml, "/domainbackup/disks/disk[@name='sda']/@backupmode", "full");
        ASSERT_EQ(xp_num(xml, "count(/domainbackup/disks/disk[@name='sda']/@incremental)"), 0);
        ASSERT_XP(xml, "/domainbackup/disks/disk[@name='vdb']/@backup", "no");
        ASSERT_EQ(xp_num(xml, "count(/domainbackup/disks/disk[@name='vdb']/@*)"), 2);

        ASSERT_OK(lv_backup_parse(xml, &info, &err));
        ASSERT_TRUE(info.pull);
        ASSERT_STREQ(info.socket, "/run/vbak/b&'1.sock");
        ASSERT_TRUE(info.host == NULL);
        ASSERT_UEQ(info.n_disks, 2);
        e = lv_backup_find(&info, "sda");
        ASSERT_TRUE(e != NULL);
        ASSERT_STREQ(e->scratch, "/tmp/it's & <odd>.scratch");
        ASSERT_STREQ(e->export_name, "sda");
        ASSERT_TRUE(e->bitmap == NULL);
        ASSERT_TRUE(lv_backup_find(&info, "vdb") == NULL);
        lv_backup_info_clear(&info);
        ASSERT_TRUE(info.disks == NULL && info.socket == NULL);
}

TEST(backup_xml_tcp_round_trip)
{
        const lv_backup_disk disk = { .device = "vda", .scratch = "/s" };
        _cleanup_free_ char *xml = lv_backup_xml(NULL, "10.0.0.5", 10809, &disk, 1);
        lv_backup_info info;

        ASSERT_TRUE(xml != NULL);
        ASSERT_XP(xml, "/domainbackup/server/@transport", "tcp");
        ASSERT_OK(lv_backup_parse(xml, &info, NULL));
        ASSERT_TRUE(info.socket == NULL);
        ASSERT_STREQ(info.host, "10.0.0.5");
        ASSERT_EQ(info.port, 10809);
        ASSERT_UEQ(info.n_disks, 1);
        ASSERT_STREQ(info.disks[0].device, "vda");
        lv_backup_info_clear(&info);
}

TEST(backup_parse_libvirt_answer)
{
        static const char xml[] =
                "<domainbackup mode='pull'>\n"
                "  <server transport='unix' socket='/tmp/lvt/bk.sock'/>\n"
                "  <disks>\n"
                "    <disk name='vda' backup='yes' type='file' backupmode='incremental' incremental='cp3' "
                "exportname='vda' exportbitmap='backup-vda' index='2'>\n"
                "      <driver type='qcow2'/>\n"
                "      <scratch file='/tmp/lvt/d1.qcow2.s1.scratch'/>\n"
                "    </disk>\n"
                "    <disk name='vdb' backup='no'/>\n"
                "    <disk name='sda' backup='yes' type='file' backupmode='full' exportname='data'>\n"
                "      <scratch file='/tmp/lvt/d2.scratch'/>\n"
                "    </disk>\n"
                "  </disks>\n"
                "</domainbackup>\n";
        _cleanup_free_ char *err = NULL;
        lv_backup_info info;
        const lv_backup_export *e;

        ASSERT_OK(lv_backup_parse(xml, &info, &err));
        ASSERT_TRUE(info.pull);
        ASSERT_STREQ(info.socket, "/tmp/lvt/bk.sock");
        ASSERT_UEQ(info.n_disks, 2);
        e = lv_backup_find(&info, "vda");
        ASSERT_TRUE(e == &info.disks[0]);
        ASSERT_STREQ(e->export_name, "vda");
        ASSERT_STREQ(e->bitmap, "backup-vda");
        ASSERT_STREQ(e->scratch, "/tmp/lvt/d1.qcow2.s1.scratch");
        e = lv_backup_find(&info, "sda");
        ASSERT_TRUE(e != NULL);
        ASSERT_STREQ(e->export_name, "data");
        ASSERT_TRUE(e->bitmap == NULL);
        ASSERT_TRUE(lv_backup_find(&info, "vdb") == NULL);
        ASSERT_TRUE(lv_backup_find(&info, NULL) == NULL);
        lv_backup_info_clear(&info);

        /* No transport: tcp; push mode. */
        ASSERT_OK(lv_backup_parse("<domainbackup><server name='h' port='1234'/></domainbackup>", &info, NULL));
        ASSERT_TRUE(!info.pull);
        ASSERT_STREQ(info.host, "h");
        ASSERT_EQ(info.port, 1234);
        ASSERT_UEQ(info.n_disks, 0);
        lv_backup_info_clear(&info);

        ASSERT_ERR(lv_backup_parse("<domaincheckpoint/>", &info, &err), EINVAL);
        ASSERT_TRUE(err != NULL);
        ASSERT_ERR(lv_backup_parse("<domainbackup><server port='x'/></domainbackup>", &info, NULL), EINVAL);
        ASSERT_TRUE(info.host == NULL);
}

TEST(checkpoint_xml_create)
{
        const char *const bitmaps[] = { "vda", "sda" }, *const none[] = { "vdb" };
        _cleanup_free_ char *xml = lv_checkpoint_xml("vbak-20240101-000000-ab&c", bitmaps, 2, none, 1, "p", 0);

        ASSERT_TRUE(xml != NULL);
        ASSERT_XP(xml, "/domaincheckpoint/name", "vbak-20240101-000000-ab&c");
        ASSERT_EQ(xp_num(xml, "count(/domaincheckpoint/disks/disk[@checkpoint='bitmap'])"), 2);
        ASSERT_XP(xml, "/domaincheckpoint/disks/disk[2]/@name", "sda");
        ASSERT_XP(xml, "/domaincheckpoint/disks/disk[@name='vdb']/@checkpoint", "no");
        /* Creation: no parent, time or bitmap names (libvirt picks them). */
        ASSERT_EQ(xp_num(xml, "count(//parent | //creationTime | //@bitmap)"), 0);
}

TEST(checkpoint_xml_redefine)
{
        const char *const bitmaps[] = { "vda" };
        _cleanup_free_ char *xml = lv_checkpoint_xml("cp4", bitmaps, 1, NULL, 0, "cp3", 1717171717);
        _cleanup_free_ char *first = lv_checkpoint_xml("cp1", bitmaps, 1, NULL, 0, NULL, 1600000000);

        ASSERT_TRUE(xml != NULL && first != NULL);
        ASSERT_XP(xml, "/domaincheckpoint/parent/name", "cp3");
        ASSERT_XP(xml, "/domaincheckpoint/creationTime", "1717171717");
        ASSERT_XP(xml, "/domaincheckpoint/disks/disk[@name='vda']/@bitmap", "cp4");
        ASSERT_XP(xml, "/domaincheckpoint/disks/disk[@name='vda']/@checkpoint", "bitmap");
        ASSERT_TRUE(strstr(xml, "<creationTime>1717171717</creationTime>") != NULL);
        ASSERT_EQ(xp_num(first, "count(//parent)"), 0);
        ASSERT_XP(first, "/domaincheckpoint/creationTime", "1600000000");
}

/* ---- storage ---- */

TEST(volume_xml)
{
        _cleanup_free_ char *thin = lv_volume_xml("a&b'c.qcow2", "qcow2", 10737418240ULL, VB_PREALLOC_THIN);
        _cleanup_free_ char *eager = lv_volume_xml("d.raw", "raw", 4096, VB_PREALLOC_EAGER);
        _cleanup_free_ char *lazy = lv_volume_xml("e", NULL, 4096, VB_PREALLOC_LAZY);

        ASSERT_TRUE(thin && eager && lazy);
        ASSERT_XP(thin, "/volume/name", "a&b'c.qcow2");
        ASSERT_XP(thin, "/volume/capacity", "10737418240");
        ASSERT_XP(thin, "/volume/capacity/@unit", "bytes");
        ASSERT_XP(thin, "/volume/allocation", "0");
        ASSERT_XP(thin, "/volume/target/format/@type", "qcow2");
        ASSERT_XP(eager, "/volume/allocation", "4096");
        ASSERT_XP(eager, "/volume/target/format/@type", "raw");
        ASSERT_XP(lazy, "/volume/allocation", "0");
        ASSERT_XP(lazy, "/volume/target/format/@type", "raw");
}

TEST(volume_parse)
{
        _cleanup_free_ char *path = NULL, *format = NULL, *err = NULL;
        uint64_t cap = 0;

        ASSERT_OK(lv_volume_parse("<volume type='file'>\n  <name>a.qcow2</name>\n  <key>/p/a.qcow2</key>\n"
                                  "  <capacity unit='bytes'>21474836480</capacity>\n"
                                  "  <allocation unit='bytes'>200704</allocation>\n"
                                  "  <target>\n    <path>/var/lib/libvirt/images/it's &amp; a.qcow2</path>\n"
                                  "    <format type='qcow2'/>\n  </target>\n</volume>\n",
                                  &path, &format, &cap, &err));
        ASSERT_STREQ(path, "/var/lib/libvirt/images/it's & a.qcow2");
        ASSERT_STREQ(format, "qcow2");
        ASSERT_UEQ(cap, 21474836480ULL);
        free(path);
        free(format);
        path = format = NULL;

        ASSERT_OK(lv_volume_parse("<volume><capacity unit='G'>3</capacity><target><path>/d</path></target>"
                                  "</volume>",
                                  &path, &format, &cap, NULL));
        ASSERT_STREQ(format, "raw");
        ASSERT_UEQ(cap, 3ULL << 30);
        ASSERT_OK(lv_volume_parse("<volume><capacity unit='MB'>5</capacity></volume>", NULL, NULL, &cap, NULL));
        ASSERT_UEQ(cap, 5000000);
        ASSERT_OK(lv_volume_parse("<volume><capacity>77</capacity></volume>", NULL, NULL, &cap, NULL));
        ASSERT_UEQ(cap, 77);

        ASSERT_ERR(lv_volume_parse("<volume><capacity unit='X'>1</capacity></volume>", NULL, NULL, &cap, &err), EINVAL);
        ASSERT_TRUE(err != NULL);
        ASSERT_ERR(lv_volume_parse("<pool/>", NULL, NULL, &cap, NULL), EINVAL);
        ASSERT_ERR(lv_volume_parse("<volume><capacity unit='EiB'>16</capacity></volume>", NULL, NULL, &cap, NULL),
                   EINVAL);
}

TEST(volume_name_round_trip)
{
        /* What lv_volume_xml writes, libvirt echoes in its answer. */
        _cleanup_free_ char *xml = lv_volume_xml("it's & <that>.raw", "raw", 1ULL << 40, VB_PREALLOC_DEFAULT);
        _cleanup_free_ char *format = NULL, *name = NULL;
        uint64_t cap;

        ASSERT_TRUE(xml != NULL);
        ASSERT_OK(lv_volume_parse(xml, NULL, &format, &cap, NULL));
        ASSERT_STREQ(format, "raw");
        ASSERT_UEQ(cap, 1ULL << 40);
        name = xp_str(xml, "/volume/name");
        ASSERT_STREQ(name, "it's & <that>.raw");
}

TEST(pool_parse)
{
        _cleanup_free_ char *type = NULL, *target = NULL, *err = NULL;

        ASSERT_OK(lv_pool_parse("<pool type='dir'>\n  <name>default</name>\n"
                                "  <uuid>0d2c5f4e-7a32-4b5c-9d4e-2c3a1b0f9e8d</uuid>\n"
                                "  <capacity unit='bytes'>105088212992</capacity>\n"
                                "  <available unit='bytes'>53687091200</available>\n  <source>\n  </source>\n"
                                "  <target>\n    <path>/var/lib/libvirt/images</path>\n"
                                "    <permissions><mode>0711</mode></permissions>\n  </target>\n</pool>\n",
                                &type, &target, &err));
        ASSERT_STREQ(type, "dir");
        ASSERT_STREQ(target, "/var/lib/libvirt/images");
        free(type);
        free(target);
        type = target = NULL;
        ASSERT_OK(lv_pool_parse("<pool type='rbd'><name>ceph</name></pool>", &type, &target, NULL));
        ASSERT_STREQ(type, "rbd");
        ASSERT_TRUE(target == NULL);
        ASSERT_ERR(lv_pool_parse("<volume/>", &type, &target, &err), EINVAL);
        ASSERT_TRUE(err != NULL);
}

TEST(disk_xml)
{
        vb_hv_disk d = { .device = (char *)"vdb",
                         .path = (char *)"/v/it's & \"q\".qcow2",
                         .format = (char *)"qcow2",
                         .bus = (char *)"scsi" };
        _cleanup_free_ char *xml = lv_disk_xml(&d), *plain = NULL;
        _cleanup_free_ char *wrapped = NULL;
        vb_hv_vm vm = {};

        ASSERT_TRUE(xml != NULL);
        ASSERT_XP(xml, "/disk/@type", "file");
        ASSERT_XP(xml, "/disk/@device", "disk");
        ASSERT_XP(xml, "/disk/driver/@name", "qemu");
        ASSERT_XP(xml, "/disk/driver/@type", "qcow2");
        ASSERT_XP(xml, "/disk/target/@bus", "scsi");
        /* Inside a domain, it reads back as it was. */
        ASSERT_TRUE(asprintf(&wrapped, "<domain><name>x</name><devices>%s</devices></domain>", xml) > 0);
        parse_ok(wrapped, &vm);
        ASSERT_UEQ(vm.n_disks, 1);
        ASSERT_STREQ(vm.disks[0].path, "/v/it's & \"q\".qcow2");
        ASSERT_STREQ(vm.disks[0].device, "vdb");
        ASSERT_STREQ(vm.disks[0].format, "qcow2");
        vb_hv_vm_clear(&vm);

        d = (vb_hv_disk){ .device = (char *)"vdc", .path = (char *)"/p" };
        plain = lv_disk_xml(&d);
        ASSERT_TRUE(plain != NULL);
        ASSERT_XP(plain, "/disk/driver/@type", "raw");
        ASSERT_XP(plain, "/disk/target/@bus", "virtio");
        d.path = NULL;
        ASSERT_TRUE(lv_disk_xml(&d) == NULL);
}
