// Plays PCM16 24 kHz chunks back to back and reports each server mark once the audio sent
// before it has actually played (or was dropped by a clear), as Twilio does.
export class PcmPlayer {
  constructor(context, onMarkPlayed) {
    this.context = context;
    this.onMarkPlayed = onMarkPlayed;
    this.queue = []; // {source, marks[]} in play order
    this.nextTime = 0;
  }

  play(arrayBuffer) {
    const samples = new Int16Array(arrayBuffer);
    if (samples.length === 0) return;
    const buffer = this.context.createBuffer(1, samples.length, 24000);
    const channel = buffer.getChannelData(0);
    for (let i = 0; i < samples.length; i++) channel[i] = samples[i] / 0x8000;
    const source = this.context.createBufferSource();
    source.buffer = buffer;
    source.connect(this.context.destination);
    const entry = { source, marks: [] };
    source.onended = () => this.ended(entry);
    this.nextTime = Math.max(this.nextTime, this.context.currentTime);
    source.start(this.nextTime);
    this.nextTime += buffer.duration;
    this.queue.push(entry);
  }

  // A mark follows the audio it belongs to: it is due when the last queued chunk has played.
  mark(name) {
    const last = this.queue[this.queue.length - 1];
    if (last) last.marks.push(name);
    else this.onMarkPlayed(name);
  }

  ended(entry) {
    // chunks end in order; release this one and anything queued before it
    while (this.queue.length) {
      const head = this.queue.shift();
      head.marks.forEach((name) => this.onMarkPlayed(name));
      if (head === entry) break;
    }
  }

  // Barge-in: drop queued audio; the dropped marks are echoed too (nothing more will play).
  clear() {
    const dropped = this.queue;
    this.queue = [];
    for (const entry of dropped) {
      entry.source.onended = null;
      try { entry.source.stop(); } catch (err) { /* never started */ }
      entry.marks.forEach((name) => this.onMarkPlayed(name));
    }
    this.nextTime = this.context.currentTime;
    return dropped.length;
  }

  get playing() {
    return this.queue.length > 0;
  }
}
