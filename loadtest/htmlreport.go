package main

import (
	"fmt"
	"html"
	"math"
	"strings"

	"imb/loadtest/hist"
)

// palette colours the targets consistently across charts.
var palette = map[string]string{
	targetBaseline:           "#555555",
	targetJWT:                "#1f77b4",
	targetIntrospect:         "#2ca02c",
	targetIntrospectUncached: "#d62728",
	targetMosquitto:          "#ff7f0e",
	targetRabbitMQ:           "#8c564b",
	targetURL:                "#9467bd",
}

type point struct{ x, y float64 }

type series struct {
	name   string
	points []point
}

// htmlReport renders a self-contained HTML page: the summary table, the headline
// figure as bars, latency distributions (CDF) and throughput over time.
func htmlReport(rep *Report) string {
	var b strings.Builder
	title := "loadtest " + rep.Scenario
	fmt.Fprintf(&b, "<!doctype html><html><head><meta charset=\"utf-8\"><title>%s</title>", html.EscapeString(title))
	b.WriteString(`<style>body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:13px}` +
		`td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}th{background:#f4f4f4}td:first-child{text-align:left}` +
		`code{background:#f4f4f4;padding:2px 4px}svg{margin:1em 1em 0 0}</style></head><body>`)
	fmt.Fprintf(&b, "<h1>%s</h1><p><code>%s</code></p><p>%s; %d CPUs, %s. %s.</p>", html.EscapeString(title), html.EscapeString(rep.Command),
		rep.Started.Format("2006-01-02 15:04 UTC"), rep.Host.CPUs, html.EscapeString(rep.Host.GoVersion), html.EscapeString(describeLoad(rep.Options)))
	b.WriteString(htmlTable(rep))
	headline := rep.Metrics[0]
	b.WriteString("<div>")
	b.WriteString(barChart(headline.Label+" (median; ratio to baseline)", rep, headline.Key))
	b.WriteString(lineChart(latencyTitle(rep.Scenario), "latency (ms, log scale)", "fraction at or below", latencySeries(rep), true))
	b.WriteString(lineChart(timelineTitle(rep.Scenario), "seconds since the run started", "per second (first run)", timelineSeries(rep), false))
	b.WriteString("</div>")
	for _, n := range rep.Notes {
		fmt.Fprintf(&b, "<p>%s</p>", html.EscapeString(n))
	}
	b.WriteString("</body></html>\n")
	return b.String()
}

func latencyTitle(scenario string) string {
	if scenario == scenarioConnect || scenario == scenarioMemory {
		return "CONNECT latency distribution (fresh tokens, all runs)"
	}
	return "end-to-end latency distribution (all runs)"
}

func timelineTitle(scenario string) string {
	if scenario == scenarioConnect || scenario == scenarioMemory {
		return "connects per second over time"
	}
	return "deliveries per second over time"
}

func htmlTable(rep *Report) string {
	var b strings.Builder
	b.WriteString("<table><tr><th>target</th><th>runs</th>")
	for _, m := range rep.Metrics {
		fmt.Fprintf(&b, "<th>%s", html.EscapeString(m.Label))
		if m.Unit != "" && m.Unit != "/s" {
			fmt.Fprintf(&b, " (%s)", html.EscapeString(m.Unit))
		}
		b.WriteString("</th>")
	}
	b.WriteString("</tr>")
	for _, s := range rep.Summaries {
		fmt.Fprintf(&b, "<tr><td style=\"color:%s\">%s</td><td>%d</td>", color(s.Target), html.EscapeString(s.Target), s.Runs-s.Failed)
		for _, m := range rep.Metrics {
			v, r := cell(s, m.Key)
			if r != "" {
				v += " <small>(" + r + ")</small>"
			}
			fmt.Fprintf(&b, "<td>%s</td>", v)
		}
		b.WriteString("</tr>")
	}
	b.WriteString("</table>")
	return b.String()
}

func color(target string) string {
	if c, ok := palette[target]; ok {
		return c
	}
	return "#000"
}

// latencySeries is each target's cumulative latency distribution over all its
// successful runs.
func latencySeries(rep *Report) []series {
	var out []series
	for _, s := range rep.Summaries {
		var h hist.Histogram
		for _, r := range rep.Runs {
			if r.Target == s.Target && r.Failure == "" {
				h.Merge(hist.FromBuckets(r.Latency))
			}
		}
		if h.Count() == 0 {
			continue
		}
		var pts []point
		var seen uint64
		for _, bk := range h.Buckets() {
			seen += bk.Count
			pts = append(pts, point{float64(bk.Upper) / 1e6, float64(seen) / float64(h.Count())})
		}
		out = append(out, series{s.Target, pts})
	}
	return out
}

// timelineSeries is each target's throughput per second in its first successful run.
func timelineSeries(rep *Report) []series {
	var out []series
	for _, s := range rep.Summaries {
		for _, r := range rep.Runs {
			if r.Target != s.Target || r.Failure != "" {
				continue
			}
			var pts []point
			for _, smp := range r.Timeline {
				y := smp.DeliveriesPer
				if rep.Scenario == scenarioConnect || rep.Scenario == scenarioMemory {
					y = smp.ConnectsPerS
				}
				pts = append(pts, point{smp.T, y})
			}
			out = append(out, series{s.Target, pts})
			break
		}
	}
	return out
}

const (
	chartW, chartH = 560, 320
	padL, padR     = 70, 20
	padT, padB     = 30, 70
)

// lineChart draws series as polylines with axes, ticks and a legend.
func lineChart(title, xlabel, ylabel string, ss []series, logX bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-size="11">`, chartW, chartH)
	fmt.Fprintf(&b, `<text x="%d" y="16" font-size="13" font-weight="bold">%s</text>`, padL, html.EscapeString(title))
	minX, maxX, maxY := math.Inf(1), math.Inf(-1), 0.0
	for _, s := range ss {
		for _, p := range s.points {
			if logX && p.x <= 0 {
				continue
			}
			minX, maxX, maxY = math.Min(minX, p.x), math.Max(maxX, p.x), math.Max(maxY, p.y)
		}
	}
	if math.IsInf(minX, 1) {
		b.WriteString(`<text x="70" y="160">no data</text></svg>`)
		return b.String()
	}
	if !logX {
		minX = 0
	}
	if maxX <= minX {
		maxX = minX + 1
	}
	if maxY <= 0 {
		maxY = 1
	}
	fx := func(x float64) float64 {
		if logX {
			return padL + (math.Log10(x)-math.Log10(minX))/(math.Log10(maxX)-math.Log10(minX))*(chartW-padL-padR)
		}
		return padL + (x-minX)/(maxX-minX)*(chartW-padL-padR)
	}
	fy := func(y float64) float64 { return chartH - padB - y/maxY*(chartH-padT-padB) }
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#000"/>`, padL, chartH-padB, chartW-padR, chartH-padB)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#000"/>`, padL, padT, padL, chartH-padB)
	for i := 0; i <= 4; i++ {
		y := maxY * float64(i) / 4
		fmt.Fprintf(&b, `<text x="%d" y="%.0f" text-anchor="end">%s</text>`, padL-4, fy(y)+4, tick(y))
		fmt.Fprintf(&b, `<line x1="%d" y1="%.0f" x2="%d" y2="%.0f" stroke="#eee"/>`, padL, fy(y), chartW-padR, fy(y))
	}
	for i := 0; i <= 5; i++ {
		var x float64
		if logX {
			x = math.Pow(10, math.Log10(minX)+(math.Log10(maxX)-math.Log10(minX))*float64(i)/5)
		} else {
			x = minX + (maxX-minX)*float64(i)/5
		}
		fmt.Fprintf(&b, `<text x="%.0f" y="%d" text-anchor="middle">%s</text>`, fx(x), chartH-padB+14, tick(x))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`, (chartW+padL)/2, chartH-padB+30, html.EscapeString(xlabel))
	fmt.Fprintf(&b, `<text x="14" y="%d" transform="rotate(-90 14 %d)" text-anchor="middle">%s</text>`, (chartH)/2, chartH/2, html.EscapeString(ylabel))
	for i, s := range ss {
		var pts []string
		for _, p := range s.points {
			if logX && p.x <= 0 {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", fx(p.x), fy(p.y)))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, color(s.name), strings.Join(pts, " "))
		lx := padL + (i%3)*160
		ly := chartH - 22 + (i/3)*14
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d">%s</text>`, lx, ly-9, color(s.name), lx+14, ly, html.EscapeString(s.name))
	}
	b.WriteString("</svg>")
	return b.String()
}

// barChart draws one horizontal bar per target for a figure.
func barChart(title string, rep *Report, key string) string {
	var b strings.Builder
	h := padT + 26*len(rep.Summaries) + 20
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-size="11">`, chartW, h)
	fmt.Fprintf(&b, `<text x="10" y="16" font-size="13" font-weight="bold">%s</text>`, html.EscapeString(title))
	maxV := 0.0
	for _, s := range rep.Summaries {
		maxV = math.Max(maxV, s.Median[key])
	}
	if maxV <= 0 {
		maxV = 1
	}
	const left = 170
	for i, s := range rep.Summaries {
		y := padT + i*26
		w := s.Median[key] / maxV * (chartW - left - 110)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`, left-6, y+14, html.EscapeString(s.Target))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="18" fill="%s"/>`, left, y, w, color(s.Target))
		label := formatValue(s.Median[key])
		if r, ok := s.Ratio[key]; ok {
			label += fmt.Sprintf(" (%s×)", formatRatio(r))
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s</text>`, float64(left)+w+4, y+14, label)
	}
	b.WriteString("</svg>")
	return b.String()
}

// tick formats an axis value compactly.
func tick(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case a >= 1e3:
		return fmt.Sprintf("%.0fk", v/1e3)
	case a >= 10 || v == 0:
		return fmt.Sprintf("%.0f", v)
	case a >= 1:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2g", v)
	}
}
