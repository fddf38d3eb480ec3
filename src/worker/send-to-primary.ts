/**
 * @internal One message to the primary over cluster's IPC channel. False
 * when the channel is closed or missing (the primary is gone, or we are
 * leaving: orphan fencing handles the rest). Never throws, and never emits
 * 'error' for a closed channel.
 */
export function sendToPrimary(message: unknown): boolean {
  if (!process.connected || !process.send) return false;
  try {
    // With a callback, a closed channel is reported there instead of as an 'error' event.
    process.send(message, undefined, undefined, () => {});
    return true;
  } catch {
    // ERR_IPC_CHANNEL_CLOSED
    return false;
  }
}
