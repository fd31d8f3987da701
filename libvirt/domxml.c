/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * domxml.c -- the libvirt XML documents of the libvirt driver (domxml.h):
 * a domain's XML read into a vb_hv_vm and rewritten for a restore, the
 * backup, checkpoint, volume and disk XML built, and what libvirt answers
 * about backups, volumes and pools read back.
 *
 * DESIGN
 * - Parsing as in cas/doc.c: XML_PARSE_NONET, no entity substitution, and
 *   a <!DOCTYPE> stops the parser, so no entity is ever declared, fetched
 *   or expanded. libvirt never sends DTDs.
 * - Every document written is built with libxml2's tree API, which escapes
 *   text and attribute values on output: names and paths may hold any
 *   character.
 * - Documents are written without XML declaration, indented, in UTF-8 (a
 *   Chinese <title> stays readable), as virsh dumpxml shows them.
 * - Sizes carry libvirt's units (virScaleInteger): b or bytes; k, KiB, KB,
 *   M, MiB, MB... (the letter alone or with "iB" is a power of 1024, with
 *   "B" a power of 1000; case does not matter).
 */
#include "libvirt/domxml.h"

#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlsave.h>
#include <stdarg.h>
#include <stdio.h>
#include <strings.h>

#include "daemon/util.h"
#include "daemon/xml.h"

_printf_(2, 3) static int set_err(char **err, const char *fmt, ...)
{
        va_list ap;

        if (!err)
                return 0;
        free(*err);
        *err = NULL;
        va_start(ap, fmt);
        if (vasprintf(err, fmt, ap) < 0)
                *err = NULL;
        va_end(ap);
        return 0;
}

/* strdup that keeps NULL; sets *oom when memory ran out. */
static char *dup0(const char *s, bool *oom)
{
        char *d;

        if (!s)
                return NULL;
        d = strdup(s);
        if (!d)
                *oom = true;
        return d;
}

/* ---- reading ------------------------------------------------------------- */

/* Parses xml whose root element must be root_name: *doc (caller frees with
 * xmlFreeDoc) and *root. -EINVAL with *err for anything else. */
static int xml_parse(const char *xml, const char *root_name, xmlDoc **doc, xmlNode **root, char **err)
{
        xmlNode *top;
        int r;

        *doc = NULL;
        *root = NULL;
        if (!xml) {
                set_err(err, "no XML");
                return -EINVAL;
        }
        r = vb_xml_read(xml, strlen(xml), "libvirt.xml", XML_PARSE_NOBLANKS, doc, err);
        if (r < 0)
                return r == -EBADMSG ? -EINVAL : r;
        top = xmlDocGetRootElement(*doc);
        if (!xmlStrEqual(top->name, BAD_CAST root_name)) {
                set_err(err, "not a <%s> document (root <%s>)", root_name, (const char *)top->name);
                xmlFreeDoc(*doc);
                *doc = NULL;
                return -EINVAL;
        }
        *root = top;
        return 0;
}

static bool is_el(const xmlNode *n, const char *name)
{
        return n && n->type == XML_ELEMENT_NODE && xmlStrEqual(n->name, BAD_CAST name);
}

/* The first element child of n called name, or NULL. */
static xmlNode *child(const xmlNode *n, const char *name)
{
        if (!n)
                return NULL;
        for (xmlNode *c = n->children; c; c = c->next)
                if (is_el(c, name))
                        return c;
        return NULL;
}

/* Attribute name of n (malloc'd), or NULL when absent; *oom on no memory. */
static char *attr_dup(const xmlNode *n, const char *name, bool *oom)
{
        xmlChar *v;
        char *s;

        if (!n || !xmlHasProp(n, BAD_CAST name))
                return NULL;
        v = xmlGetProp(n, BAD_CAST name);
        if (!v) {
                *oom = true;
                return NULL;
        }
        s = dup0((const char *)v, oom);
        xmlFree(v);
        return s;
}

/* The text of n (malloc'd), or NULL when n is NULL. */
static char *text_dup(const xmlNode *n, bool *oom)
{
        xmlChar *v;
        char *s;

        if (!n)
                return NULL;
        v = xmlNodeGetContent(n);
        if (!v) {
                *oom = true;
                return NULL;
        }
        s = dup0((const char *)v, oom);
        xmlFree(v);
        return s;
}

/* Whether attribute name of n equals value (an absent one equals dflt). */
static bool attr_is(const xmlNode *n, const char *name, const char *value, const char *dflt)
{
        xmlChar *v = n ? xmlGetProp(n, BAD_CAST name) : NULL;
        bool eq = v ? xmlStrEqual(v, BAD_CAST value) : streq_ptr(dflt, value);

        xmlFree(v);
        return eq;
}

/* A whole unsigned decimal number, blanks around allowed. */
static int parse_u64(const char *s, uint64_t *ret)
{
        char *end;
        unsigned long long v;

        if (!s)
                return -EINVAL;
        while (isspace((unsigned char)*s))
                s++;
        if (!isdigit((unsigned char)*s))
                return -EINVAL;
        errno = 0;
        v = strtoull(s, &end, 10);
        if (errno)
                return -EINVAL;
        while (isspace((unsigned char)*end))
                end++;
        if (*end)
                return -EINVAL;
        *ret = v;
        return 0;
}

/* The factor of a libvirt unit (see DESIGN); NULL or "": dflt. */
static int unit_factor(const char *unit, uint64_t dflt, uint64_t *ret)
{
        static const char prefixes[] = "kmgtpe";
        const char *p;
        uint64_t base, f = 1;

        if (!unit || !*unit) {
                *ret = dflt;
                return 0;
        }
        if (!strcasecmp(unit, "b") || !strcasecmp(unit, "bytes")) {
                *ret = 1;
                return 0;
        }
        p = strchr(prefixes, tolower((unsigned char)unit[0]));
        if (!p || !*p)
                return -EINVAL;
        if (!unit[1] || !strcasecmp(unit + 1, "ib"))
                base = 1024;
        else if (!strcasecmp(unit + 1, "b"))
                base = 1000;
        else
                return -EINVAL;
        for (const char *q = prefixes; q <= p; q++)
                f *= base;
        *ret = f;
        return 0;
}

/* The size in bytes of an element like <memory unit='KiB'>N</memory>. */
static int parse_scaled(const xmlNode *n, uint64_t dflt, uint64_t *ret)
{
        _cleanup_free_ char *text = NULL, *unit = NULL;
        bool oom = false;
        uint64_t v, f;

        text = text_dup(n, &oom);
        unit = attr_dup(n, "unit", &oom);
        if (oom)
                return -ENOMEM;
        if (parse_u64(text, &v) < 0 || unit_factor(unit, dflt, &f) < 0)
                return -EINVAL;
        if (f && v > UINT64_MAX / f)
                return -ERANGE;
        *ret = v * f;
        return 0;
}

/* An unsigned attribute; -ENOENT when absent. */
static int attr_unsigned(const xmlNode *n, const char *name, unsigned *ret)
{
        _cleanup_free_ char *s = NULL;
        bool oom = false;
        uint64_t v;

        s = attr_dup(n, name, &oom);
        if (oom)
                return -ENOMEM;
        if (!s)
                return -ENOENT;
        if (parse_u64(s, &v) < 0 || v > UINT_MAX)
                return -EINVAL;
        *ret = (unsigned)v;
        return 0;
}

/* Sockets and cores of a domain: <cpu><topology>, else <vcpu> sockets of
 * one core. */
static int domain_cpus(const xmlNode *root, unsigned *sockets, unsigned *cores)
{
        const xmlNode *topo = child(child(root, "cpu"), "topology");
        _cleanup_free_ char *vcpu_text = NULL;
        bool oom = false;
        uint64_t vcpus = 1;
        unsigned s, c;

        if (topo && attr_unsigned(topo, "sockets", &s) == 0 && attr_unsigned(topo, "cores", &c) == 0 && s && c) {
                *sockets = s;
                *cores = c;
                return 0;
        }
        vcpu_text = text_dup(child(root, "vcpu"), &oom);
        if (oom)
                return -ENOMEM;
        if (vcpu_text && (parse_u64(vcpu_text, &vcpus) < 0 || vcpus == 0 || vcpus > UINT_MAX))
                return -EINVAL;
        *sockets = (unsigned)vcpus;
        *cores = 1;
        return 0;
}

/* One <disk device='disk'> into d; 1 when it is one vbak keeps (a network
 * disk or one without target is not), 0 when skipped. */
static int parse_disk(const xmlNode *n, vb_hv_disk *d)
{
        const xmlNode *source = child(n, "source"), *target = child(n, "target");
        bool oom = false;

        if (!attr_is(n, "device", "disk", "disk") || attr_is(n, "type", "network", NULL) || !target ||
            !xmlHasProp(target, BAD_CAST "dev"))
                return 0;
        d->device = attr_dup(target, "dev", &oom);
        d->bus = attr_dup(target, "bus", &oom);
        d->format = attr_dup(child(n, "driver"), "type", &oom);
        if (!d->format && !oom)
                d->format = dup0("raw", &oom);
        if (attr_is(n, "type", "volume", NULL)) {
                d->pool = attr_dup(source, "pool", &oom);
        } else {
                d->path = attr_dup(source, "file", &oom);
                if (!d->path && !oom)
                        d->path = attr_dup(source, "dev", &oom);
        }
        return oom ? -ENOMEM : 1;
}

static int parse_nic(const xmlNode *n, vb_hv_nic *nic)
{
        const xmlNode *source = child(n, "source");
        bool oom = false;

        nic->mac = attr_dup(child(n, "mac"), "address", &oom);
        nic->vswitch = attr_dup(source, "network", &oom);
        if (!nic->vswitch && !oom)
                nic->vswitch = attr_dup(source, "bridge", &oom);
        nic->profile = attr_dup(source, "portgroup", &oom);
        nic->model = attr_dup(child(n, "model"), "type", &oom);
        return oom ? -ENOMEM : 0;
}

static int domain_to_vm(const xmlNode *root, vb_hv_vm *vm, char **err)
{
        const xmlNode *devices = child(root, "devices"), *mem = child(root, "memory");
        size_t n_disks = 0, n_nics = 0;
        bool oom = false;
        int r;

        vm->name = text_dup(child(root, "name"), &oom);
        vm->uuid = text_dup(child(root, "uuid"), &oom);
        vm->id = dup0(vm->uuid, &oom);
        vm->title = text_dup(child(root, "title"), &oom);
        if (!vm->title)
                vm->title = dup0(vm->name, &oom);
        if (oom)
                return -ENOMEM;
        if (!vm->name || !*vm->name) {
                set_err(err, "domain XML without <name>");
                return -EINVAL;
        }
        r = domain_cpus(root, &vm->cpu_sockets, &vm->cpu_cores);
        if (r < 0) {
                if (r == -EINVAL)
                        set_err(err, "domain %s: unreadable <vcpu>", vm->name);
                return r;
        }
        if (mem) {
                uint64_t bytes;

                r = parse_scaled(mem, 1024, &bytes);
                if (r < 0) {
                        if (r != -ENOMEM)
                                set_err(err, "domain %s: unreadable <memory>", vm->name);
                        return r == -ENOMEM ? r : -EINVAL;
                }
                vm->memory_mb = bytes >> 20;
        }
        for (xmlNode *c = devices ? devices->children : NULL; c; c = c->next) {
                if (is_el(c, "disk"))
                        n_disks++;
                else if (is_el(c, "interface"))
                        n_nics++;
        }
        if (n_disks && !(vm->disks = calloc(n_disks, sizeof(*vm->disks))))
                return -ENOMEM;
        if (n_nics && !(vm->nics = calloc(n_nics, sizeof(*vm->nics))))
                return -ENOMEM;
        for (xmlNode *c = devices ? devices->children : NULL; c; c = c->next) {
                if (is_el(c, "disk")) {
                        /* Counted when kept (or half-filled, below). */
                        r = parse_disk(c, &vm->disks[vm->n_disks]);
                        if (r > 0)
                                vm->n_disks++;
                } else if (is_el(c, "interface")) {
                        r = parse_nic(c, &vm->nics[vm->n_nics++]);
                } else {
                        r = 0;
                }
                if (r < 0) {
                        /* So that vb_hv_vm_clear frees a half-filled disk. */
                        if (is_el(c, "disk"))
                                vm->n_disks++;
                        return r;
                }
        }
        return 0;
}

int lv_domain_parse(const char *xml, vb_hv_vm *vm, char **err)
{
        xmlDoc *doc;
        xmlNode *root;
        int r;

        vb_hv_vm_clear(vm);
        r = xml_parse(xml, "domain", &doc, &root, err);
        if (r < 0)
                return r;
        r = domain_to_vm(root, vm, err);
        xmlFreeDoc(doc);
        if (r < 0)
                vb_hv_vm_clear(vm);
        return r;
}

/* ---- writing ------------------------------------------------------------- */

/* doc as a string (malloc'd, see DESIGN), or NULL. */
static char *xml_dump(xmlDoc *doc)
{
        xmlBufferPtr buf = xmlBufferCreate();
        xmlSaveCtxtPtr save;
        char *s = NULL;

        if (!buf)
                return NULL;
        save = xmlSaveToBuffer(buf, "UTF-8", XML_SAVE_FORMAT | XML_SAVE_NO_DECL);
        if (save) {
                long n = xmlSaveDoc(save, doc);

                if (xmlSaveClose(save) >= 0 && n >= 0)
                        s = strndup((const char *)xmlBufferContent(buf), (size_t)xmlBufferLength(buf));
        }
        xmlBufferFree(buf);
        return s;
}

/* A new document with root element name, or NULL. */
static xmlDoc *doc_new(const char *name, xmlNode **root)
{
        xmlDoc *doc = xmlNewDoc(BAD_CAST "1.0");

        *root = doc ? xmlNewDocNode(doc, NULL, BAD_CAST name, NULL) : NULL;
        if (!*root) {
                xmlFreeDoc(doc);
                return NULL;
        }
        xmlDocSetRootElement(doc, *root);
        return doc;
}

/* The builders below do nothing on a NULL parent and set *oom when they
 * fail, so that a document is built first and checked once. */

static xmlNode *add_el(xmlNode *parent, const char *name, bool *oom)
{
        xmlNode *n = parent ? xmlNewChild(parent, NULL, BAD_CAST name, NULL) : NULL;

        if (!n)
                *oom = true;
        return n;
}

/* An element with text (escaped). */
static xmlNode *add_text_el(xmlNode *parent, const char *name, const char *text, bool *oom)
{
        xmlNode *n = parent ? xmlNewTextChild(parent, NULL, BAD_CAST name, BAD_CAST text) : NULL;

        if (!n)
                *oom = true;
        return n;
}

static void set_attr(xmlNode *n, const char *name, const char *value, bool *oom)
{
        if (!n || !xmlSetProp(n, BAD_CAST name, BAD_CAST value))
                *oom = true;
}

static void set_attr_u64(xmlNode *n, const char *name, uint64_t value, bool *oom)
{
        char buf[24];

        snprintf(buf, sizeof(buf), "%" PRIu64, value);
        set_attr(n, name, buf, oom);
}

/* Replaces the content of n by text (escaped). */
static void set_text(xmlNode *n, const char *text, bool *oom)
{
        xmlNode *t;

        if (!n) {
                *oom = true;
                return;
        }
        xmlNodeSetContent(n, NULL);
        t = xmlNewDocText(n->doc, BAD_CAST text);
        if (!t || !xmlAddChild(n, t)) {
                xmlFreeNode(t);
                *oom = true;
        }
}

static void set_text_u64(xmlNode *n, uint64_t value, bool *oom)
{
        char buf[24];

        snprintf(buf, sizeof(buf), "%" PRIu64, value);
        set_text(n, buf, oom);
}

static void drop(xmlNode *n)
{
        xmlUnlinkNode(n);
        xmlFreeNode(n);
}

/* Removes every element child of n called name. */
static void drop_children(xmlNode *n, const char *name)
{
        xmlNode *next;

        for (xmlNode *c = n ? n->children : NULL; c; c = next) {
                next = c->next;
                if (is_el(c, name))
                        drop(c);
        }
}

/* The element child name of n, created (appended) when missing. */
static xmlNode *get_el(xmlNode *n, const char *name, bool *oom)
{
        xmlNode *c = child(n, name);

        return c ?: add_el(n, name, oom);
}

/* ---- the captured configuration ----------------------------------------- */

const char *lv_config_xml(const json_t *config)
{
        return json_string_value(json_object_get(config, "xml"));
}

json_t *lv_config_capture(const char *xml, const vb_hv_vm *vm)
{
        json_t *disks = json_array(), *c;

        if (!disks)
                return NULL;
        for (size_t i = 0; i < vm->n_disks; i++) {
                const vb_hv_disk *d = &vm->disks[i];

                if (json_array_append_new(disks, json_pack("{s:s?, s:s?, s:s?, s:s?, s:s?}", "device", d->device,
                                                           "path", d->path, "format", d->format, "bus", d->bus, "pool",
                                                           d->pool)) < 0) {
                        json_decref(disks);
                        return NULL;
                }
        }
        c = json_pack("{s:s, s:o}", "xml", xml ?: "", "disks", disks);
        if (!c)
                errno = ENOMEM;
        return c;
}

static bool device_listed(const vb_hv_vm_settings *s, const char *dev)
{
        if (s->n_devices == 0)
                return true;
        for (size_t i = 0; dev && i < s->n_devices; i++)
                if (streq_ptr(s->devices[i], dev))
                        return true;
        return false;
}

/* The devices of a domain: aliases of the running domain dropped, MAC
 * addresses unless s->keep_identity, disks not chosen, and the NICs when
 * s replaces them. */
static int edit_devices(xmlNode *root, const vb_hv_vm_settings *s)
{
        xmlNode *devices = child(root, "devices"), *next;
        bool oom = false;

        for (xmlNode *c = devices ? devices->children : NULL; c; c = next) {
                next = c->next;
                if (is_el(c, "disk")) {
                        xmlNode *target = child(c, "target");
                        xmlChar *dev = target ? xmlGetProp(target, BAD_CAST "dev") : NULL;
                        bool keep = !attr_is(c, "device", "disk", "disk") || device_listed(s, (const char *)dev);

                        xmlFree(dev);
                        if (!keep) {
                                drop(c);
                                continue;
                        }
                        drop_children(c, "alias");
                } else if (is_el(c, "interface")) {
                        if (s->nics_set) {
                                drop(c);
                                continue;
                        }
                        drop_children(c, "alias");
                        if (!s->keep_identity)
                                drop_children(c, "mac");
                }
        }
        if (!s->nics_set)
                return 0;
        devices = get_el(root, "devices", &oom);
        for (size_t i = 0; i < s->n_nics; i++) {
                xmlNode *iface = add_el(devices, "interface", &oom), *source;

                set_attr(iface, "type", "network", &oom);
                source = add_el(iface, "source", &oom);
                set_attr(source, "network", s->nics[i].vswitch, &oom);
                if (s->nics[i].profile)
                        set_attr(source, "portgroup", s->nics[i].profile, &oom);
                set_attr(add_el(iface, "model", &oom), "type", "virtio", &oom);
        }
        return oom ? -ENOMEM : 0;
}

/* <vcpu> and <cpu><topology> for the sockets and cores of s (zero: as
 * captured). */
static int edit_topology(xmlNode *root, const vb_hv_vm_settings *s)
{
        unsigned sockets, cores;
        xmlNode *vcpu, *cpu, *topo;
        bool oom = false;
        int r;

        if (!s->cpu_sockets && !s->cpu_cores)
                return 0;
        r = domain_cpus(root, &sockets, &cores);
        if (r < 0)
                return r;
        sockets = s->cpu_sockets ?: sockets;
        cores = s->cpu_cores ?: cores;
        if ((uint64_t)sockets * cores > UINT_MAX)
                return -EINVAL;
        vcpu = get_el(root, "vcpu", &oom);
        set_text_u64(vcpu, (uint64_t)sockets * cores, &oom);
        /* A count of vCPUs online at boot, or the state of each, no longer
         * fits the new count. */
        if (vcpu)
                xmlUnsetProp(vcpu, BAD_CAST "current");
        drop_children(root, "vcpus");
        cpu = get_el(root, "cpu", &oom);
        drop_children(cpu, "topology");
        topo = add_el(cpu, "topology", &oom);
        set_attr_u64(topo, "sockets", sockets, &oom);
        set_attr(topo, "dies", "1", &oom);
        set_attr_u64(topo, "cores", cores, &oom);
        set_attr(topo, "threads", "1", &oom);
        return oom ? -ENOMEM : 0;
}

/* <cpu mode> for s->cpu_mode (checked by the caller). */
static int edit_cpu_mode(xmlNode *root, const char *mode)
{
        xmlNode *cpu = child(root, "cpu");
        bool oom = false;

        if (!mode)
                return 0;
        if (streq(mode, "compatible")) {
                /* The captured model, or libvirt's default CPU. */
                if (!cpu)
                        return 0;
                if (child(cpu, "model"))
                        set_attr(cpu, "mode", "custom", &oom);
                else
                        xmlUnsetProp(cpu, BAD_CAST "mode");
                xmlUnsetProp(cpu, BAD_CAST "migratable");
                return oom ? -ENOMEM : 0;
        }
        cpu = get_el(root, "cpu", &oom);
        if (!cpu)
                return -ENOMEM;
        set_attr(cpu, "mode", streq(mode, "host-match") ? "host-model" : "host-passthrough", &oom);
        /* What only a custom CPU has; migratable only a host-passthrough one. */
        xmlUnsetProp(cpu, BAD_CAST "match");
        xmlUnsetProp(cpu, BAD_CAST "check");
        if (streq(mode, "host-match"))
                xmlUnsetProp(cpu, BAD_CAST "migratable");
        drop_children(cpu, "model");
        drop_children(cpu, "vendor");
        drop_children(cpu, "feature");
        return oom ? -ENOMEM : 0;
}

/* <memory> and <currentMemory> replaced by mb MiB. */
static int edit_memory(xmlNode *root, uint64_t mb)
{
        static const char *const names[] = { "memory", "currentMemory" };
        bool oom = false;

        if (!mb)
                return 0;
        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                xmlNode *old = child(root, names[i]), *n = xmlNewDocNode(root->doc, NULL, BAD_CAST names[i], NULL);

                if (!n)
                        return -ENOMEM;
                set_attr(n, "unit", "MiB", &oom);
                set_text_u64(n, mb, &oom);
                if (old) {
                        xmlReplaceNode(old, n);
                        xmlFreeNode(old);
                } else if (!xmlAddChild(root, n)) {
                        xmlFreeNode(n);
                        oom = true;
                }
                if (oom)
                        return -ENOMEM;
        }
        return 0;
}

static int edit_domain(xmlNode *root, const vb_hv_vm_settings *s)
{
        const char *title = s->title ?: s->name;
        xmlNode *name = child(root, "name"), *next;
        bool oom = false;
        int r;

        if (s->name) {
                name = get_el(root, "name", &oom);
                set_text(name, s->name, &oom);
        }
        if (title) {
                xmlNode *t = child(root, "title");

                if (!t) {
                        /* After <name>, where libvirt writes it. */
                        t = xmlNewDocNode(root->doc, NULL, BAD_CAST "title", NULL);
                        if (t && !(name ? xmlAddNextSibling(name, t) : xmlAddChild(root, t))) {
                                xmlFreeNode(t);
                                t = NULL;
                        }
                }
                set_text(t, title, &oom);
        }
        if (oom)
                return -ENOMEM;
        drop_children(root, "uuid");
        xmlUnsetProp(root, BAD_CAST "id"); /* the running domain's number */
        /* The labels libvirt gave the running domain (a static one is
         * configuration and stays). */
        for (xmlNode *c = root->children; c; c = next) {
                next = c->next;
                if (is_el(c, "seclabel") && (child(c, "label") || child(c, "imagelabel")) &&
                    !attr_is(c, "type", "static", NULL))
                        drop(c);
        }
        r = edit_devices(root, s);
        if (r == 0)
                r = edit_topology(root, s);
        if (r == 0)
                r = edit_cpu_mode(root, s->cpu_mode);
        if (r == 0)
                r = edit_memory(root, s->memory_mb);
        return r;
}

json_t *lv_config_new(json_t *captured, const vb_hv_vm_settings *s)
{
        const char *xml = lv_config_xml(captured);
        _cleanup_free_ char *out = NULL;
        json_t *disks, *entry, *ret;
        xmlDoc *doc;
        xmlNode *root;
        size_t i;
        int r;

        if (!xml || !s ||
            (s->cpu_mode && !streq(s->cpu_mode, "compatible") && !streq(s->cpu_mode, "host-match") &&
             !streq(s->cpu_mode, "passthrough"))) {
                errno = EINVAL;
                return NULL;
        }
        for (i = 0; s->nics_set && i < s->n_nics; i++)
                if (!s->nics[i].vswitch) {
                        errno = EINVAL;
                        return NULL;
                }
        r = xml_parse(xml, "domain", &doc, &root, NULL);
        if (r < 0) {
                errno = -r;
                return NULL;
        }
        r = edit_domain(root, s);
        if (r == 0 && !(out = xml_dump(doc)))
                r = -ENOMEM;
        xmlFreeDoc(doc);
        if (r < 0) {
                errno = -r;
                return NULL;
        }
        disks = json_array();
        if (!disks) {
                errno = ENOMEM;
                return NULL;
        }
        json_array_foreach(json_object_get(captured, "disks"), i, entry)
        {
                if (device_listed(s, json_string_value(json_object_get(entry, "device"))) &&
                    json_array_append_new(disks, json_deep_copy(entry)) < 0) {
                        json_decref(disks);
                        errno = ENOMEM;
                        return NULL;
                }
        }
        ret = json_pack("{s:s, s:o}", "xml", out, "disks", disks);
        if (!ret)
                errno = ENOMEM;
        return ret;
}

/* The <disk> of a domain with <target dev='device'>, or NULL. */
static xmlNode *find_disk(xmlNode *root, const char *device)
{
        xmlNode *devices = child(root, "devices");

        for (xmlNode *c = devices ? devices->children : NULL; c; c = c->next) {
                if (is_el(c, "disk") && attr_is(child(c, "target"), "dev", device, NULL))
                        return c;
        }
        return NULL;
}

/* The configuration's XML with the disk device a file at path. */
static int set_disk_path(json_t *config, const char *device, const char *path)
{
        _cleanup_free_ char *out = NULL;
        xmlNode *root, *disk, *source, *target;
        bool oom = false;
        xmlDoc *doc;
        int r;

        r = xml_parse(lv_config_xml(config), "domain", &doc, &root, NULL);
        if (r < 0)
                return r;
        disk = find_disk(root, device);
        if (!disk) {
                xmlFreeDoc(doc);
                return -ENOENT;
        }
        set_attr(disk, "type", "file", &oom);
        drop_children(disk, "source");
        drop_children(disk, "backingStore");
        source = xmlNewDocNode(doc, NULL, BAD_CAST "source", NULL);
        set_attr(source, "file", path, &oom);
        target = child(disk, "target");
        if (source && !(target ? xmlAddPrevSibling(target, source) : xmlAddChild(disk, source))) {
                xmlFreeNode(source);
                oom = true;
        }
        if (!oom && !(out = xml_dump(doc)))
                oom = true;
        xmlFreeDoc(doc);
        if (oom || json_object_set_new(config, "xml", json_string(out)) < 0)
                return -ENOMEM;
        return 0;
}

int lv_config_disk(json_t *config, const char *device, const char *path, const char *pool, vb_hv_disk *was)
{
        json_t *entry, *found = NULL;
        size_t i;
        int r;

        if (!lv_config_xml(config))
                return -EINVAL;
        json_array_foreach(json_object_get(config, "disks"), i, entry)
        {
                if (device && streq_ptr(json_string_value(json_object_get(entry, "device")), device)) {
                        found = entry;
                        break;
                }
        }
        if (!found)
                return -ENOENT;
        if (was)
                *was = (vb_hv_disk){
                        .device = (char *)json_string_value(json_object_get(found, "device")),
                        .path = (char *)json_string_value(json_object_get(found, "path")),
                        .format = (char *)json_string_value(json_object_get(found, "format")),
                        .bus = (char *)json_string_value(json_object_get(found, "bus")),
                        .pool = (char *)json_string_value(json_object_get(found, "pool")),
                };
        if (path) {
                r = set_disk_path(config, device, path);
                if (r < 0)
                        return r;
                if (json_object_set_new(found, "path", json_string(path)) < 0)
                        return -ENOMEM;
        }
        if (pool && json_object_set_new(found, "pool", json_string(pool)) < 0)
                return -ENOMEM;
        return 0;
}

/* ---- backups and checkpoints -------------------------------------------- */

char *lv_backup_xml(const char *socket, const char *host, unsigned port, const lv_backup_disk *disks, size_t n)
{
        xmlNode *root, *server, *list;
        bool oom = false;
        char *s = NULL;
        xmlDoc *doc;

        doc = doc_new("domainbackup", &root);
        if (!doc)
                return NULL;
        set_attr(root, "mode", "pull", &oom);
        server = add_el(root, "server", &oom);
        if (socket) {
                set_attr(server, "transport", "unix", &oom);
                set_attr(server, "socket", socket, &oom);
        } else {
                set_attr(server, "transport", "tcp", &oom);
                if (host)
                        set_attr(server, "name", host, &oom);
                if (port)
                        set_attr_u64(server, "port", port, &oom);
        }
        list = add_el(root, "disks", &oom);
        for (size_t i = 0; i < n; i++) {
                xmlNode *d = add_el(list, "disk", &oom);

                set_attr(d, "name", disks[i].device, &oom);
                if (disks[i].skip) {
                        set_attr(d, "backup", "no", &oom);
                        continue;
                }
                /* libvirt wants the type with backup='yes', and a scratch
                 * file for a pull-mode backup. */
                set_attr(d, "backup", "yes", &oom);
                set_attr(d, "type", "file", &oom);
                set_attr(d, "backupmode", disks[i].since ? "incremental" : "full", &oom);
                if (disks[i].since)
                        set_attr(d, "incremental", disks[i].since, &oom);
                if (disks[i].scratch)
                        set_attr(add_el(d, "scratch", &oom), "file", disks[i].scratch, &oom);
        }
        if (!oom)
                s = xml_dump(doc);
        xmlFreeDoc(doc);
        return s;
}

char *lv_checkpoint_xml(const char *name, const char *const *bitmaps, size_t n_bitmaps, const char *const *none,
                        size_t n_none, const char *parent, time_t created)
{
        xmlNode *root, *list;
        bool oom = false;
        char *s = NULL;
        xmlDoc *doc;

        doc = doc_new("domaincheckpoint", &root);
        if (!doc)
                return NULL;
        add_text_el(root, "name", name, &oom);
        if (created) {
                char buf[24];

                if (parent)
                        add_text_el(add_el(root, "parent", &oom), "name", parent, &oom);
                snprintf(buf, sizeof(buf), "%lld", (long long)created);
                add_text_el(root, "creationTime", buf, &oom);
        }
        list = add_el(root, "disks", &oom);
        for (size_t i = 0; i < n_bitmaps; i++) {
                xmlNode *d = add_el(list, "disk", &oom);

                set_attr(d, "name", bitmaps[i], &oom);
                set_attr(d, "checkpoint", "bitmap", &oom);
                if (created)
                        set_attr(d, "bitmap", name, &oom);
        }
        for (size_t i = 0; i < n_none; i++) {
                xmlNode *d = add_el(list, "disk", &oom);

                set_attr(d, "name", none[i], &oom);
                set_attr(d, "checkpoint", "no", &oom);
        }
        if (!oom)
                s = xml_dump(doc);
        xmlFreeDoc(doc);
        return s;
}

void lv_backup_info_clear(lv_backup_info *info)
{
        if (!info)
                return;
        free(info->socket);
        free(info->host);
        for (size_t i = 0; i < info->n_disks; i++) {
                free(info->disks[i].device);
                free(info->disks[i].export_name);
                free(info->disks[i].bitmap);
                free(info->disks[i].scratch);
        }
        free(info->disks);
        *info = (lv_backup_info){};
}

static int backup_from_tree(const xmlNode *root, lv_backup_info *info, char **err)
{
        const xmlNode *server = child(root, "server"), *list = child(root, "disks");
        bool oom = false;
        size_t n = 0;
        int r;

        info->pull = attr_is(root, "mode", "pull", NULL);
        if (server) {
                if (attr_is(server, "transport", "unix", "tcp")) {
                        info->socket = attr_dup(server, "socket", &oom);
                } else {
                        info->host = attr_dup(server, "name", &oom);
                        r = attr_unsigned(server, "port", &info->port);
                        if (r == -ENOMEM)
                                return r;
                        if (r == -EINVAL || info->port > 65535) {
                                set_err(err, "backup XML: unreadable server port");
                                return -EINVAL;
                        }
                }
        }
        for (xmlNode *c = list ? list->children : NULL; c; c = c->next)
                if (is_el(c, "disk"))
                        n++;
        if (n && !(info->disks = calloc(n, sizeof(*info->disks))))
                return -ENOMEM;
        for (xmlNode *c = list ? list->children : NULL; c && !oom; c = c->next) {
                lv_backup_export *e;
                const xmlNode *scratch;

                if (!is_el(c, "disk") || !attr_is(c, "backup", "yes", NULL) || !xmlHasProp(c, BAD_CAST "name"))
                        continue;
                e = &info->disks[info->n_disks++];
                e->device = attr_dup(c, "name", &oom);
                e->export_name = attr_dup(c, "exportname", &oom);
                if (!e->export_name)
                        e->export_name = dup0(e->device, &oom);
                e->bitmap = attr_dup(c, "exportbitmap", &oom);
                scratch = child(c, "scratch");
                e->scratch = attr_dup(scratch, "file", &oom);
                if (!e->scratch)
                        e->scratch = attr_dup(scratch, "dev", &oom);
        }
        return oom ? -ENOMEM : 0;
}

int lv_backup_parse(const char *xml, lv_backup_info *info, char **err)
{
        xmlDoc *doc;
        xmlNode *root;
        int r;

        *info = (lv_backup_info){};
        r = xml_parse(xml, "domainbackup", &doc, &root, err);
        if (r < 0)
                return r;
        r = backup_from_tree(root, info, err);
        xmlFreeDoc(doc);
        if (r < 0)
                lv_backup_info_clear(info);
        return r;
}

const lv_backup_export *lv_backup_find(const lv_backup_info *info, const char *device)
{
        for (size_t i = 0; info && device && i < info->n_disks; i++)
                if (streq_ptr(info->disks[i].device, device))
                        return &info->disks[i];
        return NULL;
}

/* ---- storage ------------------------------------------------------------- */

char *lv_volume_xml(const char *name, const char *format, uint64_t capacity, vb_prealloc prealloc)
{
        xmlNode *root, *n;
        bool oom = false;
        char *s = NULL;
        xmlDoc *doc;

        if (!name) {
                errno = EINVAL;
                return NULL;
        }
        doc = doc_new("volume", &root);
        if (!doc)
                return NULL;
        add_text_el(root, "name", name, &oom);
        n = add_el(root, "capacity", &oom);
        set_attr(n, "unit", "bytes", &oom);
        set_text_u64(n, capacity, &oom);
        n = add_el(root, "allocation", &oom);
        set_attr(n, "unit", "bytes", &oom);
        set_text_u64(n, prealloc == VB_PREALLOC_EAGER ? capacity : 0, &oom);
        set_attr(add_el(add_el(root, "target", &oom), "format", &oom), "type", format ?: "raw", &oom);
        if (!oom)
                s = xml_dump(doc);
        xmlFreeDoc(doc);
        return s;
}

int lv_volume_parse(const char *xml, char **path, char **format, uint64_t *capacity, char **err)
{
        _cleanup_free_ char *p = NULL, *f = NULL;
        xmlNode *root, *target, *cap;
        bool oom = false;
        uint64_t bytes = 0;
        xmlDoc *doc;
        int r;

        r = xml_parse(xml, "volume", &doc, &root, err);
        if (r < 0)
                return r;
        target = child(root, "target");
        p = text_dup(child(target, "path"), &oom);
        f = attr_dup(child(target, "format"), "type", &oom);
        if (!f && !oom)
                f = dup0("raw", &oom);
        cap = child(root, "capacity");
        r = oom ? -ENOMEM : cap ? parse_scaled(cap, 1, &bytes) : 0;
        xmlFreeDoc(doc);
        if (r < 0) {
                if (r != -ENOMEM)
                        set_err(err, "volume XML: unreadable <capacity>");
                return r == -ENOMEM ? r : -EINVAL;
        }
        if (path)
                *path = TAKE_PTR(p);
        if (format)
                *format = TAKE_PTR(f);
        if (capacity)
                *capacity = bytes;
        return 0;
}

int lv_pool_parse(const char *xml, char **type, char **target, char **err)
{
        _cleanup_free_ char *t = NULL, *p = NULL;
        xmlNode *root;
        bool oom = false;
        xmlDoc *doc;
        int r;

        r = xml_parse(xml, "pool", &doc, &root, err);
        if (r < 0)
                return r;
        t = attr_dup(root, "type", &oom);
        p = text_dup(child(child(root, "target"), "path"), &oom);
        xmlFreeDoc(doc);
        if (oom)
                return -ENOMEM;
        if (type)
                *type = TAKE_PTR(t);
        if (target)
                *target = TAKE_PTR(p);
        return 0;
}

char *lv_disk_xml(const vb_hv_disk *disk)
{
        xmlNode *root, *n;
        bool oom = false;
        char *s = NULL;
        xmlDoc *doc;

        if (!disk || !disk->path || !disk->device) {
                errno = EINVAL;
                return NULL;
        }
        doc = doc_new("disk", &root);
        if (!doc)
                return NULL;
        set_attr(root, "type", "file", &oom);
        set_attr(root, "device", "disk", &oom);
        n = add_el(root, "driver", &oom);
        set_attr(n, "name", "qemu", &oom);
        set_attr(n, "type", disk->format ?: "raw", &oom);
        set_attr(add_el(root, "source", &oom), "file", disk->path, &oom);
        n = add_el(root, "target", &oom);
        set_attr(n, "dev", disk->device, &oom);
        set_attr(n, "bus", disk->bus ?: "virtio", &oom);
        if (!oom)
                s = xml_dump(doc);
        xmlFreeDoc(doc);
        return s;
}
