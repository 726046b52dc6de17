/* SPDX-License-Identifier: MIT
 * websocket.h - XMPP over WebSocket (RFC 7395) as a c2s framing.
 *
 * After the HTTP upgrade the connection is an ordinary c2s session whose
 * bytes pass through wslay (RFC 6455 framing: masking, fragments, control
 * frames, close codes). Each text message is one XML element: <open/>
 * becomes a stream header for the c2s parser, <close/> its end, anything
 * else is fed as is; our output is cut into elements (xml/frame.h), one
 * message each.
 */
#ifndef TERN_HTTP_WEBSOCKET_H
#define TERN_HTTP_WEBSOCKET_H

#include "../c2s/session.h"

/* Makes s a WebSocket session (sets framing and xport). */
void ws_attach(tern_session_t *s);

#endif
