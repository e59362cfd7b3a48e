import C3POCore
import C3POMixing
import Foundation

/// The report page: one self-contained HTML file (inline CSS and SVG, no script, nothing
/// fetched), in four sections with fixed ids: `accuracy` (bars per task, counts, share of
/// the oracle gap), `timing` (seconds per question), `pathways` (task-average heat-maps)
/// and `flipped` (the questions whose correctness changed, with neighbours and heat-maps).
public enum HTMLReport {
    public static let sectionIDs = ["accuracy", "timing", "pathways", "flipped"]

    /// The page for `runs` (one or several methods on the same test set). `index` gives the
    /// neighbours' questions and pathways; `test` the questions' texts and choices when the
    /// rows lack them.
    public static func render(runs: [ReportRun], index: ReportIndex?, test: [MCQuestion] = [], options: ReportOptions = ReportOptions()) throws -> String {
        let a = try ReportAnalysis(runs: runs, index: index, options: options)
        var page = Page(a: a, test: Dictionary(test.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first }))
        return page.render()
    }

    /// Renders and writes the page atomically; returns its size in bytes.
    @discardableResult
    public static func write(runs: [ReportRun], index: ReportIndex?, test: [MCQuestion] = [], options: ReportOptions = ReportOptions(), to url: URL) throws -> Int {
        let html = try render(runs: runs, index: index, test: test, options: options)
        let data = Data(html.utf8)
        try AtomicWrite.write(data, to: url)
        return data.count
    }
}

private struct Page {
    let a: ReportAnalysis
    let test: [String: MCQuestion]
    var out = ""

    init(a: ReportAnalysis, test: [String: MCQuestion]) { self.a = a; self.test = test }

    mutating func render() -> String {
        out.reserveCapacity(1 << 20)
        let title = a.options.title ?? "C3PO report" + (a.options.testSet.map { ": " + URL(fileURLWithPath: $0).lastPathComponent } ?? "")
        out += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        out += "<title>\(Text.html(title))</title><style>\(Self.css)</style></head><body>\n"
        header(title)
        accuracy()
        timing()
        pathways()
        flipped()
        out += "<footer>Written by <code>c3po-apply report</code> from \(a.runs.map { "<code>\(Text.html($0.source))</code>" }.joined(separator: ", "))"
        if let i = a.index { out += " and the index <code>\(Text.html(i.directory))</code>" }
        out += ". Accuracies leave out skipped questions, as <code>c3po-apply --json</code> does.</footer>\n</body></html>\n"
        return out
    }

    // MARK: header

    mutating func header(_ title: String) {
        out += "<header><h1>\(Text.html(title))</h1>"
        out += "<p class=\"lead\">\(a.questions.count) questions"
        if let t = a.options.testSet { out += " of <code>\(Text.html(t))</code>" }
        out += " in \(a.tasks.count) task\(a.tasks.count == 1 ? "" : "s"), \(a.runs.count) run\(a.runs.count == 1 ? "" : "s")"
        out += "; \(a.gained.count) gained and \(a.lost.count) lost a correct answer under at least one run.</p>"
        out += "<table class=\"runs\"><tr><th>run</th><th>method</th><th>scored</th><th>skipped</th><th>file</th></tr>"
        for r in a.runs {
            let method = r.results.first?.method ?? "?"
            out += "<tr><td>\(swatch(r.label))\(Text.html(r.label))</td><td>\(Text.html(method))</td><td>\(r.scored.count)</td>"
            out += "<td>\(r.results.count - r.scored.count)</td><td><code>\(Text.html(r.source))</code></td></tr>"
        }
        out += "</table>"
        if let i = a.index {
            let m = i.manifest
            out += "<p>Index <code>\(Text.html(i.directory))</code>: \(m.count) references of \(m.tasks.count) task\(m.tasks.count == 1 ? "" : "s"), "
            out += "\(m.layers) layers × \(m.experts) experts; critical layers of the runs: \(a.layers.map(String.init).joined(separator: ", ")).</p>"
        }
        if !a.warnings.isEmpty {
            out += "<ul class=\"warnings\">" + a.warnings.map { "<li>\(Text.html($0))</li>" }.joined() + "</ul>"
        }
        out += "<nav>" + zip(HTMLReport.sectionIDs, ["Accuracy per task", "Time per question", "Pathways per task", "Questions that flipped"])
            .map { "<a href=\"#\($0.0)\">\($0.1)</a>" }.joined(separator: " · ") + "</nav></header>\n"
    }

    func colour(ofRun label: String) -> String {
        a.series.first { $0.label == label && $0.kind != .base }?.colour ?? ReportAnalysis.baseColour
    }

    func swatch(_ label: String) -> String {
        let s = a.series.first { $0.label == label && $0.kind != .base }
        let border = s?.kind == .oracle ? ";border:1px dashed #374151" : ""
        return "<span class=\"sw\" style=\"background:\(s?.colour ?? ReportAnalysis.baseColour)\(border)\"></span>"
    }

    // MARK: accuracy

    mutating func accuracy() {
        out += "<section id=\"accuracy\"><h2>Accuracy per task</h2><p class=\"legend\">"
        for s in a.series {
            let border = s.kind == .oracle ? ";border:1px dashed #374151" : ""
            let what = s.kind == .base ? "base model" : s.kind == .oracle ? "\(s.label) (gold answers used: upper bound)" : s.label
            out += "<span class=\"sw\" style=\"background:\(s.colour)\(border)\"></span>\(Text.html(what)) "
        }
        out += "</p><div class=\"charts\">"
        for task in [ReportAnalysis.allTasks] + a.tasks {
            let n = a.tallies[task]?.first?.total ?? 0
            let bars = a.series.map { s -> Charts.Bar in
                let t = a.tallies[task]![s.run]
                let value = a.accuracy(s, task: task)
                let correct = s.kind == .base ? t.baseCorrect : t.correct
                return Charts.Bar(label: s.kind == .base ? "base" : s.label, colour: s.colour, outlined: s.kind == .oracle, value: value,
                                  detail: "\(Text.percent(value)) % (\(correct) of \(t.total))",
                                  data: [("series", s.kind == .base ? "base" : s.label), ("task", task), ("accuracy", "\(value)")])
            }
            let caption = task == ReportAnalysis.allTasks ? "all tasks" : task
            out += "<figure class=\"acc\"><figcaption><b>\(Text.html(caption))</b> <span class=\"n\">\(n) questions</span></figcaption>"
            out += Charts.accuracy(bars, title: "accuracy, \(caption)") + "</figure>"
        }
        out += "</div>"
        // The table: accuracies, improved / worsened, share of the oracle gap.
        let methods = a.series.filter { $0.kind != .base }
        out += "<table class=\"acc\"><thead><tr><th rowspan=\"2\">task</th><th rowspan=\"2\">questions</th><th rowspan=\"2\">base</th>"
        for s in methods { out += "<th colspan=\"\(s.kind == .oracle ? 2 : 3)\">\(swatch(s.label))\(Text.html(s.label))</th>" }
        out += "</tr><tr>"
        for s in methods { out += "<th>accuracy</th><th>improved / worsened</th>" + (s.kind == .oracle ? "" : "<th>oracle gap recovered</th>") }
        out += "</tr></thead><tbody>"
        for task in a.tasks + [ReportAnalysis.allTasks] {
            let ts = a.tallies[task]!
            let base = a.series[0]
            out += "<tr\(task == ReportAnalysis.allTasks ? " class=\"total\"" : "")><td>\(Text.html(task))</td><td>\(ts[base.run].total)</td>"
            out += "<td data-series=\"base\" data-task=\"\(Text.html(task))\" data-accuracy=\"\(a.accuracy(base, task: task))\">\(Text.percent(a.accuracy(base, task: task)))</td>"
            for s in methods {
                let t = ts[s.run]
                out += "<td data-series=\"\(Text.html(s.label))\" data-task=\"\(Text.html(task))\" data-accuracy=\"\(t.accuracy)\">\(Text.percent(t.accuracy))</td>"
                out += "<td data-series=\"\(Text.html(s.label))\" data-task=\"\(Text.html(task))\" data-improved=\"\(t.improved)\" data-worsened=\"\(t.worsened)\">"
                out += "<span class=\"up\">+\(t.improved)</span> / <span class=\"down\">−\(t.worsened)</span></td>"
                if s.kind != .oracle {
                    if let g = a.gapRecovered(run: s.run, task: task) {
                        out += "<td data-series=\"\(Text.html(s.label))\" data-task=\"\(Text.html(task))\" data-gap-recovered=\"\(g)\">\(Text.fixed(100 * g, 0)) %</td>"
                    } else {
                        out += "<td class=\"na\" title=\"\(a.series.contains { $0.kind == .oracle } ? "the oracle gains nothing here" : "no oracle run")\">—</td>"
                    }
                }
            }
            out += "</tr>"
        }
        out += "</tbody></table>"
        out += "<p class=\"note\">Improved: wrong at base, right under the run; worsened: the reverse. Oracle gap recovered: the run's gain over the base divided by the oracle's"
        out += a.series.contains { $0.kind == .oracle } ? "." : " (add an oracle run, <code>--method oracle</code>, to see it)."
        out += "</p></section>\n"
    }

    // MARK: timing

    mutating func timing() {
        out += "<section id=\"timing\"><h2>Time per question</h2>"
        var rows: [Charts.TimingRow] = []
        for (i, r) in a.runs.enumerated() {
            let t = a.timing(run: i)
            rows.append(Charts.TimingRow(label: r.label, colour: r.method == MixingMethod.none ? ReportAnalysis.baseColour : (r.method == .oracle ? "#6b7280" : colour(ofRun: r.label)),
                                         base: t.base, c3po: t.c3po, overhead: t.overhead))
        }
        out += Charts.timing(rows)
        out += "<table class=\"timing\"><tr><th>run</th><th>base pass, s / question</th><th>C3PO answer, s / question</th><th>overhead (extra / base)</th><th>share of the C3PO answer's time</th></tr>"
        for r in rows {
            let share = r.c3po > 0 ? (r.c3po - r.base) / r.c3po : 0
            out += "<tr><td>\(swatch(r.label))\(Text.html(r.label))</td><td>\(Text.fixed(r.base, 4))</td><td>\(Text.fixed(r.c3po, 4))</td>"
            out += "<td data-run=\"\(Text.html(r.label))\" data-overhead=\"\(r.overhead)\">\(Text.percent(r.overhead)) %</td><td>\(Text.percent(share)) %</td></tr>"
        }
        out += "</table><p class=\"note\">The C3PO answer's time includes the base pass, the question's embedding (its share of the batch), retrieval, re-mixing and the re-evaluated tail.</p></section>\n"
    }

    // MARK: pathways (task averages)

    mutating func pathways() {
        out += "<section id=\"pathways\"><h2>Pathways per task</h2>"
        guard a.experts > 0, !a.layers.isEmpty else {
            out += "<p class=\"note\">The runs record no pathways (rows written by an older <code>c3po-apply</code>): no heat-maps.</p></section>\n"
            return
        }
        out += "<p class=\"note\">Mean routing at the last prompt position of the critical layers (rows, layer numbers) over the experts (columns): "
        out += "the router's own (base), the neighbours' recorded pathways (from the index), and each run's re-mixed pathway (a question whose routing was kept counts with its base routing). "
        out += "One colour scale per task; underlined: experts that were core (re-weighted) for at least half of the task's questions. Hover a row for its largest weights.</p>"
        for task in a.tasks {
            let means = a.taskMeans(task: task)
            var maps: [(String, [[Double]?])] = []
            if let m = means["base"] { maps.append(("base (router)", m.values.map { $0 })) }
            if let m = means["neighbours"] { maps.append(("neighbours (mean of \(m.count))", m.values.map { $0 })) }
            for i in a.remixedRuns { if let m = means[String(i)] { maps.append(("\(a.runs[i].label) (re-mixed)", m.values.map { $0 })) } }
            guard !maps.isEmpty else { continue }
            let core = a.taskCore(task: task)
            let n = means["base"]?.count ?? 0
            figure(maps, caption: "<b>\(Text.html(task))</b> <span class=\"n\">mean of \(n) questions</span>", core: core, rowTitles: true, cls: "tavg")
        }
        out += "</section>\n"
    }

    mutating func figure(_ maps: [(String, [[Double]?])], caption: String, core: [Set<Int>]?, rowTitles: Bool, cls: String) {
        let maximum = maps.flatMap { $0.1.compactMap { $0?.max() } }.max() ?? 0
        out += "<figure class=\"maps \(cls)\"><figcaption>\(caption) \(Charts.scale(maximum: maximum, core: core != nil))</figcaption><div class=\"mrow\">"
        for (name, g) in maps {
            out += "<div class=\"map\"><div class=\"cap\">\(Text.html(name))</div>"
            out += Charts.heatmap(g, layers: a.layers, experts: a.experts, maximum: maximum, core: core, name: name, rowTitles: rowTitles) + "</div>"
        }
        out += "</div></figure>"
    }

    // MARK: flipped questions

    mutating func flipped() {
        out += "<section id=\"flipped\"><h2>Questions that flipped</h2>"
        let unchanged = a.questions.count - a.gained.count - a.lost.count
        let right = a.questions.filter { q in q.baseCorrect && !q.rows.contains { $0?.c3poCorrect == false } }.count
        out += "<p>\(a.gained.count) questions were wrong at base and right under at least one run (gained), \(a.lost.count) the reverse (lost). "
        out += "The other \(unchanged) have the same result in every run: \(right) right, \(unchanged - right) wrong. "
        out += "Each entry opens to its neighbours and heat-maps (base routing, neighbours' pathways, each run's re-mixed pathway, one colour scale per question); "
        out += "questions flipped by more runs come first.</p>"
        out += "<table class=\"flips\"><tr><th>task</th><th>questions</th><th>gained</th><th>lost</th><th>unchanged right</th><th>unchanged wrong</th></tr>"
        for t in a.tasks {
            let qs = a.questions.filter { $0.task == t }
            let g = a.gained.filter { $0.task == t }.count, l = a.lost.filter { $0.task == t }.count
            let r = qs.filter { q in q.baseCorrect && !q.rows.contains { $0?.c3poCorrect == false } }.count
            out += "<tr><td>\(Text.html(t))</td><td>\(qs.count)</td><td class=\"up\">\(g)</td><td class=\"down\">\(l)</td><td>\(r)</td><td>\(qs.count - g - l - r)</td></tr>"
        }
        out += "</table>"
        flipList(a.gained, heading: "Gained: wrong at base, right under a run", kind: "gained")
        flipList(a.lost, heading: "Lost: right at base, wrong under a run", kind: "lost")
        out += "</section>\n"
    }

    mutating func flipList(_ qs: [QuestionView], heading: String, kind: String) {
        out += "<h3 id=\"\(kind)\">\(Text.html(heading)) (\(qs.count))</h3>"
        guard !qs.isEmpty else { out += "<p class=\"note\">None.</p>"; return }
        let shown = qs.prefix(max(0, a.options.maxHeatmaps))
        out += "<div class=\"flist \(kind)\">"
        for (i, q) in shown.enumerated() { question(q, open: i == 0, kind: kind, number: i) }
        out += "</div>"
        let more = qs.dropFirst(shown.count)
        guard !more.isEmpty else { return }
        let rest = more.prefix(max(0, a.options.maxListed))
        out += "<p class=\"note\">\(more.count) more \(kind) questions, without heat-maps (at most \(a.options.maxHeatmaps) are drawn per list: <code>--max-heatmaps</code>)"
        out += rest.count < more.count ? "; the first \(rest.count) of them:</p>" : ":</p>"
        out += "<table class=\"more\"><tr><th>id</th><th>task</th><th>gold</th><th>base</th>" + a.runs.map { "<th>\(Text.html($0.label))</th>" }.joined() + "<th>best neighbour</th></tr>"
        for q in rest {
            out += "<tr><td>\(Text.html(q.id))</td><td>\(Text.html(q.task))</td><td>\(Text.html(q.gold))</td><td class=\"\(q.baseCorrect ? "ok" : "bad")\">\(Text.html(q.baseAnswer ?? "—"))</td>"
            for row in q.rows {
                if let r = row { out += "<td class=\"\(r.c3poCorrect ? "ok" : "bad")\">\(Text.html(r.c3poAnswer ?? "—"))</td>" } else { out += "<td class=\"na\">—</td>" }
            }
            let best = q.rows.compactMap { $0?.neighbors.map(\.similarity).max() }.max()
            out += "<td>\(best.map { Text.fixed(Double($0), 3) } ?? "—")</td></tr>"
        }
        out += "</table>"
        if rest.count < more.count {
            out += "<p class=\"note\">… and \(more.count - rest.count) more, counted in the table above (all are in the runs' JSONL).</p>"
        }
    }

    func answerText(_ label: String?, _ q: QuestionView) -> String {
        guard let label else { return "—" }
        if let mc = test[q.id], let i = mc.labels.firstIndex(of: label), i < mc.choices.count, mc.choices[i] != label {
            return "\(label) (\(mc.choices[i]))"
        }
        return label
    }

    mutating func question(_ q: QuestionView, open: Bool, kind: String, number: Int) {
        out += "<details class=\"q\" id=\"\(kind)-\(number)\"\(open ? " open" : "")><summary><b>\(Text.html(q.id))</b> <span class=\"task\">\(Text.html(q.task))</span> "
        out += "gold <b>\(Text.html(answerText(q.gold, q)))</b> · base <span class=\"chip \(q.baseCorrect ? "ok" : "bad")\">\(Text.html(answerText(q.baseAnswer, q)))</span> →"
        for i in a.remixedRuns {
            guard let r = q.rows[i] else { continue }
            let label = a.runs[i].label
            let border = a.runs[i].method == .oracle ? "border-style:dashed;border-color:#374151" : "border-color:\(colour(ofRun: label))"
            out += " <span class=\"chip \(r.c3poCorrect ? "ok" : "bad")\" style=\"\(border)\">\(Text.html(label)) \(Text.html(answerText(r.c3poAnswer, q)))</span>"
        }
        if let best = q.rows.compactMap({ $0?.neighbors.map(\.similarity).max() }).max() {
            out += " <span class=\"n\">best neighbour \(Text.fixed(Double(best), 3))</span>"
        }
        out += "</summary><div class=\"qbody\">"
        let text = q.question ?? test[q.id]?.question
        out += "<p class=\"qtext\">\(text.map(Text.html) ?? "<span class=\"na\">(question text not recorded; pass --test)</span>")</p>"

        // Neighbours, grouped by the runs that drew the same ones.
        var groups: [([NeighborInfo], [String])] = []
        for (i, row) in q.rows.enumerated() {
            guard let r = row, !r.neighbors.isEmpty else { continue }
            if let g = groups.firstIndex(where: { $0.0.map(\.id) == r.neighbors.map(\.id) }) { groups[g].1.append(a.runs[i].label) } else { groups.append((r.neighbors, [a.runs[i].label])) }
        }
        for (ns, labels) in groups {
            out += "<table class=\"nb\"><tr><th colspan=\"5\">neighbours of \(labels.map(Text.html).joined(separator: ", "))</th></tr>"
            out += "<tr><th>id</th><th>task</th><th>similarity</th><th>question</th><th>gold</th></tr>"
            for n in ns {
                let rec = a.index?.record(id: n.id)
                out += "<tr><td>\(Text.html(n.id))</td><td\(n.task == q.task ? "" : " class=\"bad\"")>\(Text.html(n.task))</td><td>\(Text.fixed(Double(n.similarity), 3))</td>"
                out += "<td>\(rec.map { Text.html($0.question) } ?? "<span class=\"na\">not in the index</span>")</td><td>\(Text.html(rec?.gold ?? "—"))</td></tr>"
            }
            out += "</table>"
        }

        // Heat-maps: base, neighbours, each run's re-mixed routing.
        guard let baseRow = q.rows.compactMap({ $0 }).first(where: { $0.basePathway != nil }), let base = a.grid(baseRow.basePathway) else {
            out += "<p class=\"note\">No pathways recorded for this question.</p></div></details>"
            return
        }
        func dbl(_ g: [[Float]?]) -> [[Double]?] { g.map { $0?.map(Double.init) } }
        var maps: [(String, [[Double]?])] = [("base (router)", dbl(base))]
        var seen = Set<String>()
        for (ns, _) in groups {
            for n in ns where seen.insert(n.id).inserted && seen.count <= a.options.maxNeighbourMaps {
                if let g = a.neighbourGrid(id: n.id) { maps.append(("\(n.id) · \(Text.fixed(Double(n.similarity), 3))", dbl(g))) }
            }
        }
        var kept: [String] = []
        for i in a.remixedRuns {
            guard let r = q.rows[i] else { continue }
            if let g = a.grid(r.c3poPathway) {
                maps.append(("\(a.runs[i].label) (re-mixed) → \(r.c3poAnswer ?? "—") \(r.c3poCorrect ? "✓" : "✗")", dbl(g)))
            } else {
                kept.append(a.runs[i].label)
            }
        }
        let core = a.core(of: q)
        let coreNote = core == nil ? (a.coreCount(of: q).map { "core experts: all \($0)" } ?? "") : "core experts: \(a.coreCount(of: q) ?? 0) per layer"
        let keptNote = kept.isEmpty ? "" : "; kept the base routing: \(kept.joined(separator: ", "))"
        figure(maps, caption: "<span class=\"n\">\(Text.html(coreNote + keptNote))</span>", core: core, rowTitles: false, cls: "qmaps")
        out += "</div></details>"
    }

    static let css = """
    body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#111827;margin:0 auto;max-width:1400px;padding:16px 24px;background:#fff}
    h1{font-size:22px;margin:0 0 6px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #e5e7eb;padding-bottom:4px}h3{font-size:15px;margin:18px 0 6px}
    code{font:12px ui-monospace,SFMono-Regular,Menlo,monospace;background:#f3f4f6;padding:0 3px;border-radius:3px}
    table{border-collapse:collapse;margin:8px 0;font-size:13px}th,td{border:1px solid #e5e7eb;padding:3px 7px;text-align:left;vertical-align:top}
    th{background:#f9fafb;font-weight:600}td[data-accuracy],td[data-overhead],td[data-gap-recovered]{text-align:right;font-variant-numeric:tabular-nums}
    tr.total td{font-weight:600;background:#f9fafb}.na{color:#9ca3af}.up{color:#047857}.down{color:#b91c1c}.ok{color:#047857}.bad{color:#b91c1c}
    .lead{font-size:15px}.note{color:#4b5563;font-size:13px}.n{color:#6b7280;font-size:12px}nav{margin:8px 0}nav a{color:#2563eb}
    .warnings{background:#fffbeb;border:1px solid #fcd34d;padding:6px 6px 6px 24px;font-size:13px}
    .sw{display:inline-block;width:11px;height:11px;margin:0 4px 0 8px;vertical-align:-1px;border-radius:2px}
    .charts{display:flex;flex-wrap:wrap;gap:10px}figure{margin:0}figure.acc{border:1px solid #e5e7eb;border-radius:6px;padding:6px 8px}
    figcaption{font-size:13px;margin-bottom:2px}svg text{font-size:9px;fill:#374151}svg .grid{stroke:#e5e7eb}svg text.value{font-size:9px;fill:#111827}
    svg.timing text{font-size:12px}svg.timing text.label{font-weight:600}
    figure.maps{margin:6px 0 14px}figure.maps figcaption svg{vertical-align:middle;margin-left:8px}
    .maps .mrow{display:flex;flex-wrap:wrap;gap:6px 14px}.map .cap{font-size:11px;color:#374151;max-width:300px;overflow:hidden;white-space:nowrap;text-overflow:ellipsis}
    svg.hm text{font-size:7px;fill:#6b7280}svg.hm .row{fill:transparent}svg.hm .row:hover{fill:rgba(244,63,94,.12)}svg.hm .missing{stroke:#e5e7eb}
    details.q,table.more,figure.tavg{content-visibility:auto;contain-intrinsic-size:auto 40px}
    details.q{border:1px solid #e5e7eb;border-radius:6px;margin:4px 0;padding:3px 8px}details.q[open]{background:#fcfcfd}
    summary{cursor:pointer}.task{background:#eef2ff;color:#3730a3;border-radius:3px;padding:0 4px;font-size:12px}
    .chip{border:1px solid #d1d5db;border-left-width:4px;border-radius:3px;padding:0 4px;font-size:12px;background:#fff}
    .qtext{font-style:italic;margin:4px 0}table.nb td:nth-child(3){text-align:right;font-variant-numeric:tabular-nums}
    footer{margin-top:30px;color:#6b7280;font-size:12px;border-top:1px solid #e5e7eb;padding-top:6px}
    """
}
