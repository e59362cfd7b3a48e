import C3POCore
import C3POMixing
import C3POModel
import Foundation
import XCTest

/// NGD's parametrisation on the engine's tiny checkpoint: only the core experts of the critical
/// layers move, each layer keeps its mass, the result is never worse on the objective than the
/// start, and a step along −∂L/∂θ lowers L as its first-order term says (the chain rule from the
/// engine's ∂L/∂ω, itself checked against torch in TailGradientTests).
final class NeighbourhoodGradientTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    func fixture() throws -> (RoutedMoEModel, [NGDNeighbor], [[Float]]) {
        let model = try ModelLoader.load(directory: Self.root.appendingPathComponent("Tests/Fixtures/moe/olmoe-f32"))
        let prompts = ["Question: What is 2+2?\nAnswer:", "The quick brown fox jumps over the lazy dog.",
                       "Routing weights are normalised to sum to one, then the top-k experts are kept."]
        let labels = [5, 17, 42, 99]
        var neighbours: [NGDNeighbor] = []
        for (i, p) in prompts.enumerated() {
            neighbours.append(NGDNeighbor(state: try model.prefill(try model.encode(p), override: nil), labelIDs: labels, gold: i % 4, weight: Float(i + 1)))
        }
        let sample = try model.prefill(try model.encode("A test question?\nAnswer:"), override: nil).routerProbs
        return (model, neighbours, sample)
    }

    func testOnlyCoreExpertsMoveAndTheObjectiveNeverEndsHigher() throws {
        let (model, neighbours, sample) = try fixture()
        let layers = Array(0..<model.layerCount)
        let start = RoutingOverride.identity(pathway: sample, layers: layers)
        let core = Dictionary(uniqueKeysWithValues: layers.map { ($0, CoreExperts.select(sample[$0], count: 4)) })
        let r = try XCTUnwrap(NeighbourhoodGradient.optimise(model: model, start: start, core: core, neighbours: neighbours,
                                                             parameters: NGDParameters(steps: 10, learningRate: 30, start: .own)))
        XCTAssertLessThan(r.loss, r.startLoss - 1e-3, "ten steps lower the neighbours' loss")
        XCTAssertEqual(r.steps, 10)
        for l in layers {
            let before = sample[l], after = try XCTUnwrap(r.override.layers[l])
            for e in 0..<model.expertCount where !core[l]!.contains(e) { XCTAssertEqual(after[e], before[e], "layer \(l) expert \(e) is not core") }
            XCTAssertEqual(after.reduce(0, +), before.reduce(0, +), accuracy: 1e-5, "layer \(l) keeps its mass")
            XCTAssertNotEqual(after, before, "layer \(l) moved")
        }
        let none = try XCTUnwrap(NeighbourhoodGradient.optimise(model: model, start: start, core: core, neighbours: neighbours,
                                                                parameters: NGDParameters(steps: 0, learningRate: 30, start: .own)))
        XCTAssertEqual(none.override, start)
        XCTAssertEqual(none.loss, none.startLoss)
    }

    /// The test question rides along with the neighbours' forwards as a row without a loss: its
    /// label logits are the tail's at the returned pathway, whichever iterate that is, and the
    /// row changes neither the loss nor the gradient.
    func testTheAnswerRidingAlongIsTheTailsAnswer() throws {
        let (model, neighbours, _) = try fixture()
        let test = try model.prefill(try model.encode("A test question?\nAnswer:"), override: nil)
        let layers = Array(1..<model.layerCount)
        let start = RoutingOverride.identity(pathway: test.routerProbs, layers: layers)
        let core = Dictionary(uniqueKeysWithValues: layers.map { ($0, CoreExperts.select(test.routerProbs[$0], count: 4)) })
        let rows = [5, 17, 42, 99]
        for steps in [0, 1, 3, 10] {
            let p = NGDParameters(steps: steps, learningRate: 30, start: .own)
            let r = try XCTUnwrap(NeighbourhoodGradient.optimise(model: model, start: start, core: core, neighbours: neighbours,
                                                                 parameters: p, answer: .init(state: test, labelIDs: rows)))
            let logits = try XCTUnwrap(r.answerLogits, "\(steps) steps")
            let tail = try model.reevaluateTail(test, fromLayer: 1, override: r.override, rows: rows)
            for (a, b) in zip(logits, tail) { XCTAssertEqual(a, b, accuracy: 1e-4 * max(1, abs(b)), "\(steps) steps") }
            let alone = try XCTUnwrap(NeighbourhoodGradient.optimise(model: model, start: start, core: core, neighbours: neighbours, parameters: p))
            XCTAssertEqual(alone.override, r.override, "\(steps) steps: the answer's row does not move the pathway")
            XCTAssertEqual(alone.loss, r.loss, accuracy: 1e-6 * max(1, abs(r.loss)))
        }
    }

    /// Several questions' steps in lockstep (one engine batch per step, each question under its
    /// own iterate): every result is what the question gets alone, and a question whose
    /// neighbours carry no kernel weight gets nil without disturbing the others.
    func testQuestionsSteppedTogetherGetTheirOwnResults() throws {
        let (model, neighbours, _) = try fixture()
        let layers = Array(1..<model.layerCount), rows = [5, 17, 42, 99]
        let p = NGDParameters(steps: 4, learningRate: 30, start: .own)
        var problems: [NeighbourhoodGradient.Problem] = []
        for (i, text) in ["A test question?\nAnswer:", "Another one, longer than the first?\nAnswer:", "Third.\nAnswer:"].enumerated() {
            let test = try model.prefill(try model.encode(text), override: nil)
            let start = RoutingOverride.identity(pathway: test.routerProbs, layers: layers)
            let core = Dictionary(uniqueKeysWithValues: layers.map { ($0, CoreExperts.select(test.routerProbs[$0], count: 3 + i)) })
            // Each question its own neighbours (a subset, weights of its own).
            let own = neighbours.enumerated().filter { $0.offset != i }.map { var n = $0.element; n.weight *= Float(i + 1); return n }
            problems.append(.init(start: start, core: core, neighbours: own, answer: .init(state: test, labelIDs: rows)))
        }
        var weightless = problems[0]
        weightless.neighbours = weightless.neighbours.map { var n = $0; n.weight = 0; return n }
        let together = try NeighbourhoodGradient.optimise(model: model, problems + [weightless], parameters: p)
        XCTAssertEqual(together.count, 4)
        XCTAssertNil(together[3], "no neighbour with kernel weight")
        for (i, problem) in problems.enumerated() {
            let alone = try XCTUnwrap(NeighbourhoodGradient.optimise(model: model, start: problem.start, core: problem.core,
                                                                     neighbours: problem.neighbours, parameters: p, answer: problem.answer))
            let r = try XCTUnwrap(together[i])
            XCTAssertEqual(r.steps, alone.steps)
            XCTAssertEqual(r.loss, alone.loss, accuracy: 1e-5 * max(1, abs(alone.loss)), "question \(i)")
            XCTAssertEqual(r.startLoss, alone.startLoss, accuracy: 1e-5 * max(1, abs(alone.startLoss)), "question \(i)")
            XCTAssertLessThan(r.loss, r.startLoss, "question \(i) moved")
            for (l, w) in alone.override.layers {
                for (a, b) in zip(try XCTUnwrap(r.override.layers[l]), w) { XCTAssertEqual(a, b, accuracy: 1e-4, "question \(i) layer \(l)") }
            }
            for (a, b) in zip(try XCTUnwrap(r.answerLogits), try XCTUnwrap(alone.answerLogits)) { XCTAssertEqual(a, b, accuracy: 1e-4 * max(1, abs(b))) }
        }
    }

    func testAStepLowersTheLossByItsFirstOrderTerm() throws {
        let (model, neighbours, sample) = try fixture()
        let layers = [model.layerCount - 1]
        let start = RoutingOverride.identity(pathway: sample, layers: layers)
        let core = [layers[0]: Array(0..<model.expertCount)]
        // L(θ − η∇) ≈ L(θ) − η‖∇‖²: the decrease of one small step, over η, tends to ‖∇‖² as η → 0.
        var ratios: [Float] = []
        for lr in [Float(0.4), 0.2] {
            let r = try XCTUnwrap(NeighbourhoodGradient.optimise(model: model, start: start, core: core, neighbours: neighbours,
                                                                 parameters: NGDParameters(steps: 1, learningRate: lr, start: .own)))
            ratios.append((r.startLoss - r.loss) / lr)
        }
        XCTAssertGreaterThan(ratios[1], 0, "a small step lowers the loss")
        XCTAssertEqual(ratios[0], ratios[1], accuracy: 0.25 * ratios[1], "the decrease is first order in the step")
    }

    func testBadParametersAreRefused() throws {
        XCTAssertThrowsError(try NGDParameters(steps: -1).validate())
        XCTAssertThrowsError(try NGDParameters(learningRate: 0).validate())
        XCTAssertThrowsError(try NGDParameters(learningRate: .nan).validate())
    }
}
