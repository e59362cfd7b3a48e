import C3POCore
import Foundation

/// `task_weights.json` of an index folder (Index/README.md): per task, the mixing
/// hyper-parameters chosen at build time and the task-level surrogate pathway.
public struct TaskWeights: Codable, Sendable, Equatable {
    public struct Task: Codable, Sendable, Equatable {
        public var count: Int
        public var alpha: Float
        public var bandwidth: Float
        public var criticalLayers: [Int]
        public var coreExperts: Int
        /// [critical layer][experts]: the task-level surrogate routing, in `criticalLayers` order.
        public var pathway: [[Float]]?
        public var lossBefore: Float?
        public var lossAfter: Float?
        public var looAccuracyBase: Float?
        public var looAccuracyMixed: Float?
        /// Questions the leave-one-out choice was made on (after subsampling).
        public var looQuestions: Int?

        enum CodingKeys: String, CodingKey {
            case count, alpha, bandwidth, pathway
            case criticalLayers = "critical_layers"
            case coreExperts = "core_experts"
            case lossBefore = "loss_before"
            case lossAfter = "loss_after"
            case looAccuracyBase = "loo_accuracy_base"
            case looAccuracyMixed = "loo_accuracy_mixed"
            case looQuestions = "loo_questions"
        }

        public init(count: Int, alpha: Float, bandwidth: Float, criticalLayers: [Int], coreExperts: Int,
                    pathway: [[Float]]? = nil, lossBefore: Float? = nil, lossAfter: Float? = nil,
                    looAccuracyBase: Float? = nil, looAccuracyMixed: Float? = nil, looQuestions: Int? = nil) {
            self.count = count; self.alpha = alpha; self.bandwidth = bandwidth; self.criticalLayers = criticalLayers
            self.coreExperts = coreExperts; self.pathway = pathway; self.lossBefore = lossBefore; self.lossAfter = lossAfter
            self.looAccuracyBase = looAccuracyBase; self.looAccuracyMixed = looAccuracyMixed; self.looQuestions = looQuestions
        }
    }

    public var tasks: [String: Task]
    public init(tasks: [String: Task] = [:]) { self.tasks = tasks }

    public enum LoadError: Error, CustomStringConvertible {
        case invalid(URL, String)
        public var description: String {
            switch self { case .invalid(let u, let why): return "\(u.path): \(why)" }
        }
    }

    /// Nil when the folder has no `task_weights.json` (an index built from archives alone).
    public static func load(indexDirectory: URL) throws -> TaskWeights? {
        let url = indexDirectory.appendingPathComponent(IndexFolder.taskWeightsFile)
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        return try load(url)
    }

    /// The largest `task_weights.json` read (real ones: a few KB a task).
    public static let maxBytes = 64 << 20

    /// One `task_weights.json`, checked task by task.
    public static func load(_ url: URL) throws -> TaskWeights {
        let data = try FileError.read(url, limit: maxBytes, what: "a task_weights.json")
        let tw: TaskWeights
        do { tw = try JSONDecoding.decode(TaskWeights.self, from: data) }
        catch { throw LoadError.invalid(url, "cannot decode: \(error)") }
        for (name, t) in tw.tasks {
            guard t.alpha.isFinite, (0...1).contains(t.alpha) else { throw LoadError.invalid(url, "task '\(name)': alpha \(t.alpha) not in [0, 1]") }
            guard t.bandwidth.isFinite, t.bandwidth > 0 else { throw LoadError.invalid(url, "task '\(name)': bandwidth \(t.bandwidth) not positive") }
            if let p = t.pathway, p.count != t.criticalLayers.count {
                throw LoadError.invalid(url, "task '\(name)': pathway has \(p.count) layers for \(t.criticalLayers.count) critical layers")
            }
            if let p = t.pathway, let bad = p.joined().first(where: { !$0.isFinite || $0 < 0 }) {
                throw LoadError.invalid(url, "task '\(name)': pathway holds \(bad), not a finite non-negative weight")
            }
        }
        return tw
    }

    /// The file's bytes (keys sorted, pretty-printed).
    public func encoded() throws -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try enc.encode(self)
    }

    /// The manifest's `mixing` for these values: the tasks' α and bandwidth averaged by
    /// their reference counts; nil when no task has values.
    public var manifestMixing: IndexManifest.Mixing? {
        guard !tasks.isEmpty else { return nil }
        let ts = tasks.sorted { $0.key < $1.key }.map(\.value) // a fixed order: the same sums every run
        let n = Float(max(ts.reduce(0) { $0 + $1.count }, 1))
        return .init(source: "leave-one-out",
                     alpha: Double(ts.reduce(Float(0)) { $0 + $1.alpha * Float($1.count) } / n),
                     bandwidth: Double(ts.reduce(Float(0)) { $0 + $1.bandwidth * Float($1.count) } / n))
    }

    /// α and bandwidth for a test sample: the neighbours' tasks' values, weighted by
    /// max(similarity, 0) (uniform when every similarity is ≤ 0); the defaults for
    /// neighbours whose task has no entry.
    public func hyperParameters(neighbors: [(task: String, similarity: Float)],
                                defaultAlpha: Float = Float(IndexManifest.Mixing.defaults.alpha),
                                defaultBandwidth: Float = Float(IndexManifest.Mixing.defaults.bandwidth)) -> (alpha: Float, bandwidth: Float) {
        guard !neighbors.isEmpty else { return (defaultAlpha, defaultBandwidth) }
        var ws = neighbors.map { Double(max($0.similarity, 0)) }
        if ws.reduce(0, +) <= 0 { ws = Array(repeating: 1, count: neighbors.count) }
        var a = 0.0, b = 0.0, total = 0.0
        for (n, w) in zip(neighbors, ws) {
            let t = tasks[n.task]
            a += w * Double(t?.alpha ?? defaultAlpha)
            b += w * Double(t?.bandwidth ?? defaultBandwidth)
            total += w
        }
        return (Float(a / total), Float(b / total))
    }

    /// The task chosen by the neighbours' similarity-weighted vote (ties: the name first
    /// in sort order), among tasks that have a surrogate pathway.
    public func votedTask(neighbors: [(task: String, similarity: Float)]) -> String? {
        var score: [String: Double] = [:]
        for n in neighbors where tasks[n.task]?.pathway != nil { score[n.task, default: 0] += Double(max(n.similarity, 0)) + 1e-9 }
        return score.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.first?.key
    }
}
