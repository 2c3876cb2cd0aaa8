/** The benchmarks' SVG plots: well-formed, escaped, and drawing what they are given. */
import { expect } from 'chai';
import { renderSvg, formatValue } from './svg-plot.js';

describe('bench: SVG plots', () => {
  it('a CDF on a log axis draws one path per series, escapes labels, and formats ns as durations', () => {
    const svg = renderSvg({
      kind: 'cdf', logX: true, unit: 'ns', title: 'a <b>&</b> title', xLabel: 'x',
      series: [{ label: 'lockstep <1 µs>', values: [500, 800, 1200, 0, -5] }, { label: 'setTimeout', values: [1e6, 2e6, 9e5] }],
    });
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).to.equal(true);
    expect(svg.trimEnd().endsWith('</svg>')).to.equal(true);
    expect(svg).to.contain('a &lt;b&gt;&amp;&lt;/b&gt; title').and.contain('lockstep &lt;1 µs&gt;');
    expect(svg).not.to.contain('<b>');
    expect(svg.match(/<path d="M/g)).to.have.length(2);
    expect(svg).to.contain('>100 ns<').and.contain('>10 ms<');
    expect(svg).not.to.match(/NaN|Infinity/);
  });

  it('a time series draws lines and markers; a histogram bins its values', () => {
    const line = renderSvg({ kind: 'line', title: 't', xLabel: 's', yLabel: 'µs', series: [{ label: 'a', points: [[0, 1], [1, -2], [2, 3]] }, { label: 'b', points: [[0, 0], [2, 1]], markers: true }] });
    expect(line.match(/<path /g)).to.have.length(1);
    expect(line.match(/<circle /g)).to.have.length(2);
    const hist = renderSvg({ kind: 'histogram', title: 'h', xLabel: 'x', bins: 4, series: [{ label: 'a', values: [1, 2, 3, 4, 4, 4] }] });
    expect(hist.match(/<path /g)).to.have.length(1);
    expect(formatValue(1_500_000, 'ns')).to.equal('1.5 ms');
    expect(formatValue(0.5)).to.equal('0.5');
  });
});
