// Server-sent events read from a fetch() response body
// (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation).

/**
 * The events of a text/event-stream body, as `{event, data, id}`; ends with the stream.
 * Comment lines (": keepalive") are skipped; `id` is the last id seen, as EventSource keeps it.
 */
export async function* readEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let event = '';
  let data = [];
  let lastId = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      const lines = buffer.split(/\r\n|\r|\n/);
      // The last piece may be a line still arriving.
      buffer = lines.pop();
      for (const line of lines) {
        if (line === '') {
          if (data.length) yield { event: event || 'message', data: data.join('\n'), id: lastId };
          event = '';
          data = [];
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon === -1 ? line : line.slice(0, colon);
        let text = colon === -1 ? '' : line.slice(colon + 1);
        if (text.startsWith(' ')) text = text.slice(1);
        if (field === 'event') event = text;
        else if (field === 'data') data.push(text);
        else if (field === 'id' && !text.includes('\0')) lastId = text;
      }
    }
  } finally {
    reader.releaseLock();
  }
}
