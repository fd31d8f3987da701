/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * xml.c -- safe reading of a peer's XML (daemon/xml.h).
 */
#include "daemon/xml.h"

#include <errno.h>
#include <libxml/parser.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/util.h"

/* SAX internalSubset: called at <!DOCTYPE name ...> before any declaration
 * of the internal subset is parsed. Stops the parser. */
static void reject_dtd(void *ctx, const xmlChar *name, const xmlChar *external_id, const xmlChar *system_id)
{
        xmlParserCtxtPtr ctxt = ctx;

        *(bool *)ctxt->_private = true;
        xmlStopParser(ctxt);
}

/* A generic error handler that drops libxml2's messages. */
_printf_(2, 3) static void silence(void *ctx, const char *msg, ...)
{
}

_printf_(2, 3) static void set_err(char **err, const char *fmt, ...)
{
        va_list ap;

        if (!err)
                return;
        free(*err);
        va_start(ap, fmt);
        if (vasprintf(err, fmt, ap) < 0)
                *err = NULL;
        va_end(ap);
}

int vb_xml_read(const char *buf, size_t len, const char *url, int extra_options, xmlDoc **ret, char **err)
{
        const int options =
                XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA | extra_options;
        xmlGenericErrorFunc saved_handler;
        void *saved_ctx;
        xmlParserCtxtPtr ctxt;
        xmlDoc *doc;
        bool dtd = false;
        int r = 0;

        *ret = NULL;
        if (len > INT32_MAX)
                return -EBADMSG;
        xmlInitParser();
        ctxt = xmlNewParserCtxt();
        if (!ctxt || !ctxt->sax) {
                xmlFreeParserCtxt(ctxt);
                return -ENOMEM;
        }
        ctxt->sax->internalSubset = reject_dtd;
        ctxt->sax->externalSubset = NULL;
        ctxt->_private = &dtd;
        /* No forced encoding: the prologue's encoding="..." is honoured and
         * libxml2 hands out UTF-8 either way. XML_PARSE_NOERROR does not
         * cover encoding errors, which go to the thread's generic handler
         * (stderr): silenced for this parse only. */
        saved_handler = xmlGenericError;
        saved_ctx = xmlGenericErrorContext;
        xmlSetGenericErrorFunc(NULL, silence);
        doc = xmlCtxtReadMemory(ctxt, buf, (int)len, url, NULL, options);
        xmlSetGenericErrorFunc(saved_ctx, saved_handler);
        if (dtd) {
                set_err(err, "XML with a document type declaration is not accepted");
                r = -EBADMSG;
        } else if (!doc || !ctxt->wellFormed) {
                xmlErrorPtr e = xmlCtxtGetLastError(ctxt);
                _cleanup_free_ char *msg = strdup(e && e->message ? e->message : "not well-formed");

                if (!msg) {
                        r = -ENOMEM;
                } else {
                        msg[strcspn(msg, "\n")] = 0;
                        set_err(err, "malformed XML at line %d column %d: %s", e ? e->line : 0, e ? e->int2 : 0, msg);
                        r = -EBADMSG;
                }
        } else if (!xmlDocGetRootElement(doc)) {
                set_err(err, "XML without a root element");
                r = -EBADMSG;
        }
        xmlFreeParserCtxt(ctxt);
        if (r < 0) {
                xmlFreeDoc(doc);
                return r;
        }
        *ret = doc;
        return 0;
}
