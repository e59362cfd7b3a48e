import C3POMixing
import Foundation

// The numbers behind the page, computed once from the runs: accuracies per task and
// series, flips, timings and the task-average pathways. Accuracies are those of
// `RunSummary` (skipped rows excluded), so the page agrees with `c3po-apply --json`.

public struct ReportOptions: Sendable {
    public var title: String?
    /// The test set the runs answered, shown in the header.
    public var testSet: String?
    /// Flipped questions drawn with heat-maps, per direction (gained, lost); the others are
    /// listed in a table without them, so a large run stays small.
    public var maxHeatmaps: Int = 100
    /// Flipped questions beyond those listed in the table without heat-maps, per direction;
    /// the rest are only counted (per task, in the section's table).
    public var maxListed: Int = 500
    /// Neighbour pathways drawn per question.
    public var maxNeighbourMaps: Int = 8

    public init() {}
}

/// Counts of one run (or the base) over a set of questions.
struct Tally: Equatable {
    var total = 0, correct = 0, baseCorrect = 0, improved = 0, worsened = 0
    var accuracy: Double { total == 0 ? 0 : Double(correct) / Double(total) }
    var baseAccuracy: Double { total == 0 ? 0 : Double(baseCorrect) / Double(total) }

    mutating func add(_ r: SampleResult) {
        total += 1
        if r.c3poCorrect { correct += 1 }
        if r.baseCorrect { baseCorrect += 1 }
        if !r.baseCorrect && r.c3poCorrect { improved += 1 }
        if r.baseCorrect && !r.c3poCorrect { worsened += 1 }
    }
}

/// A bar of the accuracy charts: the base model, a method, or the oracle.
struct Series {
    enum Kind { case base, method, oracle }
    var label: String
    var kind: Kind
    /// The run whose `c3po_correct` the bar shows; for the base, the run whose `base_correct` it shows.
    var run: Int
    var colour: String
}

/// One question across the runs.
struct QuestionView {
    var id: String
    var task: String
    var gold: String
    var question: String?
    var baseAnswer: String?
    var baseCorrect: Bool
    /// Per run (in run order): its row, nil where the run did not score the question.
    var rows: [SampleResult?]
    /// Runs other than the oracle whose answer differs in correctness from the base.
    var methodFlips: Int
}

/// Mean routing of the critical layers: [layer row][experts].
struct MeanPathway {
    var values: [[Double]]
    var count: Int
}

struct ReportAnalysis {
    let runs: [ReportRun]
    let index: ReportIndex?
    let options: ReportOptions
    let series: [Series]
    let tasks: [String]
    /// task (and "all") → per run tally.
    let tallies: [String: [Tally]]
    let questions: [QuestionView]
    let gained: [QuestionView]
    let lost: [QuestionView]
    /// The critical layers of the heat-maps (union over the runs' rows), ascending.
    let layers: [Int]
    let experts: Int
    var warnings: [String] = []

    static let allTasks = "all"
    /// Colours of the method bars, in run order (the base is grey, the oracle outlined).
    static let palette = ["#2563eb", "#ea580c", "#059669", "#9333ea", "#db2777", "#0891b2", "#65a30d", "#b45309"]
    static let baseColour = "#9ca3af"
    static let oracleColour = "#e5e7eb"

    init(runs: [ReportRun], index: ReportIndex?, options: ReportOptions) throws {
        guard !runs.isEmpty else { throw ReportError.noRuns }
        self.runs = runs; self.index = index; self.options = options
        var warnings: [String] = []

        var series = [Series(label: "base", kind: .base, run: 0, colour: Self.baseColour)]
        var colour = 0
        for (i, r) in runs.enumerated() where r.method != MixingMethod.none && r.method != .oracle {
            series.append(Series(label: r.label, kind: .method, run: i, colour: Self.palette[colour % Self.palette.count]))
            colour += 1
        }
        for (i, r) in runs.enumerated() where r.method == .oracle {
            series.append(Series(label: r.label, kind: .oracle, run: i, colour: Self.oracleColour))
        }
        self.series = series

        let scored = runs.map(\.scored)
        tasks = Set(scored.flatMap { $0.map(\.task) }).sorted { $0.compare($1, options: .numeric) == .orderedAscending }  // task2 before task10
        var tallies: [String: [Tally]] = [:]
        for t in tasks + [Self.allTasks] { tallies[t] = Array(repeating: Tally(), count: runs.count) }
        for (i, rows) in scored.enumerated() {
            for r in rows {
                tallies[r.task]![i].add(r)
                tallies[Self.allTasks]![i].add(r)
            }
        }
        self.tallies = tallies

        // Questions in the order of the first run that has them.
        var order: [String] = []
        var byRun: [[String: SampleResult]] = []
        for rows in scored {
            var m: [String: SampleResult] = [:]
            for r in rows where m[r.id] == nil { m[r.id] = r }
            byRun.append(m)
        }
        var seen = Set<String>()
        for rows in scored { for r in rows where seen.insert(r.id).inserted { order.append(r.id) } }
        var disagree = 0
        var questions: [QuestionView] = []
        questions.reserveCapacity(order.count)
        for id in order {
            let rows = byRun.map { $0[id] }
            guard let first = rows.compactMap({ $0 }).first else { continue }
            if rows.contains(where: { $0 != nil && $0!.baseCorrect != first.baseCorrect }) { disagree += 1 }
            let flips = zip(runs, rows).filter { run, r in
                run.method != .oracle && r.map { $0.c3poCorrect != first.baseCorrect } == true
            }.count
            questions.append(QuestionView(id: id, task: first.task, gold: first.gold,
                                          question: rows.compactMap { $0?.question }.first,
                                          baseAnswer: first.baseAnswer, baseCorrect: first.baseCorrect,
                                          rows: rows, methodFlips: flips))
        }
        self.questions = questions
        // Questions that most methods flipped first (the oracle alone flips every wrong one).
        func flippedFirst(_ xs: [QuestionView]) -> [QuestionView] {
            xs.enumerated().sorted { a, b in
                a.element.methodFlips != b.element.methodFlips ? a.element.methodFlips > b.element.methodFlips : a.offset < b.offset
            }.map(\.element)
        }
        gained = flippedFirst(questions.filter { q in !q.baseCorrect && q.rows.contains { $0?.c3poCorrect == true } })
        lost = flippedFirst(questions.filter { q in q.baseCorrect && q.rows.contains { $0?.c3poCorrect == false } })

        for (i, rows) in scored.enumerated() where rows.count != questions.count {
            warnings.append("\(runs[i].label) scored \(rows.count) of the \(questions.count) questions the runs hold together (not the same test set or --limit?)")
        }
        if disagree > 0 {
            warnings.append("the runs' base answers differ in correctness on \(disagree) questions (another model or prompt?); the base bars show \(runs[0].label)'s")
        }

        var layerSet = Set<Int>()
        var experts = 0
        for rows in scored {
            for r in rows {
                if let l = r.criticalLayers { layerSet.formUnion(l) }
                if experts == 0, let p = r.basePathway?.values.first { experts = p.count }
            }
        }
        for (i, rows) in scored.enumerated() where !rows.isEmpty && !rows.contains(where: { $0.basePathway != nil }) {
            warnings.append("\(runs[i].label) (\(runs[i].source)) records no pathways (written by an older c3po-apply): its heat-maps are left out")
        }
        layers = layerSet.sorted()
        self.experts = experts
        if let index, experts > 0, index.manifest.experts != experts {
            warnings.append("the index holds \(index.manifest.experts) experts per layer, the runs \(experts): neighbour pathways are left out")
        }
        if index == nil {
            warnings.append("no index given (--index): neighbour questions and pathways are not shown")
        } else if let index {
            let missing = Set(scored.flatMap { $0.flatMap { $0.neighbors.map(\.id) } }).filter { index.record(id: $0) == nil }
            if !missing.isEmpty {
                warnings.append("\(missing.count) neighbour ids are not in the index \(index.directory) (another index?): their questions and pathways are not shown")
            }
        }
        self.warnings = warnings
    }

    /// The runs that re-mix (all but `--method none`), in the order of the bars: methods, then the oracle.
    var remixedRuns: [Int] { series.filter { $0.kind != .base }.map(\.run) }

    /// Whether the index's pathways can be drawn next to the runs'.
    var neighbourPathwaysUsable: Bool {
        guard let index else { return false }
        return experts > 0 && index.manifest.experts == experts
    }

    /// Seconds per scored question: base pass, C3PO answer (base included), and the
    /// overhead ratio (c3po − base) / base, as in `RunSummary`.
    func timing(run i: Int) -> (base: Double, c3po: Double, overhead: Double) {
        let rows = runs[i].scored
        guard !rows.isEmpty else { return (0, 0, 0) }
        let b = rows.reduce(0) { $0 + $1.secondsBase }, c = rows.reduce(0) { $0 + $1.secondsC3PO }
        return (b / Double(rows.count), c / Double(rows.count), b > 0 ? (c - b) / b : 0)
    }

    /// Accuracy of a series on a task ("all" for every task).
    func accuracy(_ s: Series, task: String) -> Double {
        guard let t = tallies[task]?[s.run] else { return 0 }
        return s.kind == .base ? t.baseAccuracy : t.accuracy
    }

    /// The share of the oracle's gap a run recovers on a task: (gain of the run) / (gain of
    /// the oracle), each against its own base (as `Scripts/demo` prints it); nil without an
    /// oracle run or when the oracle gains nothing.
    func gapRecovered(run i: Int, task: String) -> Double? {
        guard let o = series.first(where: { $0.kind == .oracle }), let ts = tallies[task] else { return nil }
        let gap = ts[o.run].accuracy - ts[o.run].baseAccuracy
        guard gap > 0 else { return nil }
        return (ts[i].accuracy - ts[i].baseAccuracy) / gap
    }

    // MARK: pathways

    /// A row's routing of the heat-map layers; nil where none is recorded.
    func grid(_ p: [Int: [Float]]?) -> [[Float]?]? {
        guard let p else { return nil }
        return layers.map { l in p[l].flatMap { $0.count == experts ? $0 : nil } }
    }

    func neighbourGrid(id: String) -> [[Float]?]? {
        guard neighbourPathwaysUsable, let index, index.record(id: id) != nil else { return nil }
        return layers.map { l in index.pathway(id: id, layer: l).map(Array.init) }
    }

    /// Per task, mean pathways: the base routing, the neighbours' (from the index), and each
    /// run's re-mixed routing (a row without one counts with its base routing: the routing
    /// its answer used). Keys: "base", "neighbours", and the run index as a string.
    func taskMeans(task: String) -> [String: MeanPathway] {
        var out: [String: MeanPathway] = [:]
        guard experts > 0, !layers.isEmpty else { return out }
        func accumulate(_ key: String, _ g: [[Float]?]) {
            var m = out[key] ?? MeanPathway(values: Array(repeating: Array(repeating: 0, count: experts), count: layers.count), count: 0)
            for (j, row) in g.enumerated() {
                guard let row else { continue }
                for e in 0..<experts { m.values[j][e] += Double(row[e]) }
            }
            m.count += 1
            out[key] = m
        }
        let qs = questions.filter { task == Self.allTasks || $0.task == task }
        let neighbourRun = runs.indices.first { i in runs[i].scored.contains { !$0.neighbors.isEmpty } }
        for q in qs {
            guard let baseRow = q.rows.compactMap({ $0 }).first(where: { $0.basePathway != nil }), let base = grid(baseRow.basePathway) else { continue }
            accumulate("base", base)
            if let n = neighbourRun, let row = q.rows[n] {
                for nb in row.neighbors { if let g = neighbourGrid(id: nb.id) { accumulate("neighbours", g) } }
            }
            for (i, row) in q.rows.enumerated() {
                guard let row, runs[i].method != MixingMethod.none, let b = grid(row.basePathway) else { continue }
                accumulate(String(i), grid(row.c3poPathway) ?? b)
            }
        }
        for (k, var m) in out where m.count > 0 {
            m.values = m.values.map { $0.map { $0 / Double(m.count) } }
            out[k] = m
        }
        return out
    }

    /// Core experts to mark on a task's average maps: those that were core for at least half
    /// of the task's questions (per layer row); nil when no run re-weights core experts or
    /// every expert is core.
    func taskCore(task: String) -> [Set<Int>]? {
        var counts = Array(repeating: Array(repeating: 0, count: experts), count: layers.count)
        var n = 0
        for q in questions where task == Self.allTasks || q.task == task {
            guard let core = q.rows.compactMap({ $0?.coreExperts }).first else { continue }
            n += 1
            for (j, l) in layers.enumerated() { for e in core[l] ?? [] where e < experts { counts[j][e] += 1 } }
        }
        guard n > 0 else { return nil }
        let sets = counts.map { row in Set(row.indices.filter { 2 * row[$0] >= n }) }
        return sets.allSatisfy({ $0.count == experts }) ? nil : sets
    }

    /// A question's core experts per heat-map row, nil when none are recorded or all are core.
    func core(of q: QuestionView) -> [Set<Int>]? {
        guard let core = q.rows.compactMap({ $0?.coreExperts }).first else { return nil }
        let sets = layers.map { Set(core[$0] ?? []) }
        return sets.allSatisfy({ $0.count >= experts }) ? nil : sets
    }

    /// How many experts a run re-weights per layer (from its rows), for captions.
    func coreCount(of q: QuestionView) -> Int? {
        q.rows.compactMap({ $0?.coreExperts }).first?.values.first?.count
    }
}
