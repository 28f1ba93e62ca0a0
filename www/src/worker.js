// The module Web Worker that owns one VM. Messages in:
//   {type:'load', build, baseUrl} (start loading the module early; optional)
//   {type:'init', build, baseUrl, opts}  {type:'start'}  {type:'pause'}
//   {type:'serial', bytes}  {type:'stats', id}  {type:'disk', id}  {type:'saveState', id}
// Messages out:
//   {type:'ready', build, version}  {type:'error', message}  {type:'serial', bytes}
//   {type:'stats', stats}  {type:'exit', reason}  {type:'reply', id, value}
import { loadBuild } from './loader.js';
import { Runner, createVm } from './runner.js';

let runner = null;

function post(msg, transfer) {
  self.postMessage(msg, transfer ?? []);
}

self.onmessage = async (ev) => {
  const m = ev.data;
  try {
    switch (m.type) {
      case 'load': await loadBuild(m.build, m.baseUrl); break;
      case 'init': {
        const glue = await loadBuild(m.build, m.baseUrl);
        const vm = createVm(glue, { ...m.opts, build: m.build });
        runner = new Runner(vm, {
          statsIntervalMs: m.opts.statsIntervalMs,
          deterministic: m.opts.icountShift !== undefined && m.opts.icountShift !== null,
          onSerial: (bytes) => post({ type: 'serial', bytes }, [bytes.buffer]),
          onStats: (stats) => post({ type: 'stats', stats }),
          onExit: (reason) => post({ type: 'exit', reason }),
        });
        post({ type: 'ready', build: m.build, version: glue.version() });
        break;
      }
      case 'start': runner?.start(); break;
      case 'pause': runner?.pause(); break;
      case 'serial': runner?.write(m.bytes); break;
      case 'stats': post({ type: 'reply', id: m.id, value: runner?.stats() }); break;
      case 'disk': {
        const d = runner?.disk();
        post({ type: 'reply', id: m.id, value: d }, d ? [d.buffer] : []);
        break;
      }
      case 'saveState': {
        const st = runner.saveState();
        post({ type: 'reply', id: m.id, value: st }, [st.buffer]);
        break;
      }
      default: throw new Error(`unknown message ${m.type}`);
    }
  } catch (e) {
    post({ type: 'error', id: m.id, message: e instanceof Error ? e.message : String(e) });
  }
};
