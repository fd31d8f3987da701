/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * xml.h -- reading XML that comes from a peer (a CVM's REST answers,
 * libvirt's documents) with libxml2, safely: no network access, and a
 * document type declaration stops the parser at once, so that no entity
 * of it is ever expanded (no "billion laughs", no external entities).
 * libxml2's messages never reach stderr; the caller gets one line.
 */
#ifndef VB_XML_H
#define VB_XML_H

#include <libxml/tree.h>
#include <stddef.h>

/* Parses len bytes of buf (url names it in libxml2's errors) with
 * XML_PARSE_NONET, NOERROR, NOWARNING and NOCDATA plus extra_options: *ret
 * (caller frees with xmlFreeDoc) has a root element. -EBADMSG with *err
 * (caller frees; err may be NULL) for a document type declaration, XML
 * that is not well-formed, or no root element; -ENOMEM. */
int vb_xml_read(const char *buf, size_t len, const char *url, int extra_options, xmlDoc **ret, char **err);

#endif
