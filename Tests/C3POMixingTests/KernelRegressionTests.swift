import C3POMixing
import C3POModel
import Foundation
import XCTest

// Hand-computed examples: every expected number below is worked out in the comment
// beside it, never taken from our own output. Tolerance 1e-6 (Float arithmetic).
final class KernelRegressionTests: XCTestCase {
    let tol: Float = 1e-6
    // 2 layers × 4 experts; only layer 1 is critical. Layer 0 is never read.
    let n1: [Float] = [0.1, 0.2, 0.3, 0.4]
    let n2: [Float] = [0.4, 0.3, 0.2, 0.1]
    let n3: [Float] = [0.25, 0.25, 0.25, 0.25]
    let sample: [[Float]] = [[0.25, 0.25, 0.25, 0.25], [0.5, 0.3, 0.15, 0.05]]

    func neighbors(_ sims: [Float]) -> [PathwayNeighbor] {
        zip(sims, [n1, n2, n3]).map { PathwayNeighbor(similarity: $0, pathway: [[0, 0, 0, 1], $1]) }
    }

    func assertClose(_ a: [Float]?, _ b: [Float], _ what: String, file: StaticString = #filePath, line: UInt = #line) {
        guard let a else { return XCTFail("\(what): nil", file: file, line: line) }
        XCTAssertEqual(a.count, b.count, what, file: file, line: line)
        let diff = zip(a, b).map { abs($0 - $1) }.max() ?? 0
        XCTAssertLessThanOrEqual(diff, tol, "\(what): largest difference \(diff); got \(a), expected \(b)", file: file, line: line)
    }

    func testKernelWeights() {
        // Gaussian, h = 0.5: d = 1 − 0.5 = 0.5, K = exp(−0.25 / 0.5) = exp(−0.5)
        XCTAssertEqual(MixingKernel.gaussian.weight(similarity: 0.5, bandwidth: 0.5), 0.60653066, accuracy: 1e-6)
        XCTAssertEqual(MixingKernel.gaussian.weight(similarity: 1, bandwidth: 0.1), 1, accuracy: 1e-7)
        XCTAssertEqual(MixingKernel.cosine.weight(similarity: -0.3, bandwidth: 1), 0)
        XCTAssertEqual(MixingKernel.cosine.weight(similarity: 0.3, bandwidth: 1), 0.3)
        XCTAssertEqual(MixingKernel.uniform.weight(similarity: -0.9, bandwidth: 1), 1)
    }

    func testGaussianEstimateThreeNeighbours() throws {
        // sims 1, 0.5, 0 with h = 0.5 → d = 0, 0.5, 1 → K = 1, e^−0.5 = 0.60653066, e^−2 = 0.13533528
        // ΣK = 1.74186594; ω̂[0] = (0.1 + 0.4·0.60653066 + 0.25·0.13533528) / ΣK = 0.37644608 / 1.74186594
        let est = try KernelRegression.estimate(neighbors: neighbors([1, 0.5, 0]), layers: [1], experts: 4,
                                                kernel: .gaussian, bandwidth: 0.5)
        let k2: Float = 0.60653066, k3: Float = 0.13533528, s: Float = 1 + k2 + k3
        let expected: [Float] = (0..<4).map { (n1[$0] + k2 * n2[$0] + k3 * n3[$0]) / s }
        XCTAssertEqual(expected[0], 0.37644608 / 1.74186594, accuracy: 1e-6)
        assertClose(est?[1], expected, "gaussian ω̂")
        XCTAssertNil(est?[0], "only the critical layers are estimated")
    }

    func testCosineKernelRegressionThreeNeighbours() throws {
        // cosine kernel: sims 0.5, 0.25, −0.5 → K = 0.5, 0.25, 0 (clipped)
        // ω̂ = (0.5 n1 + 0.25 n2) / 0.75 = (2 n1 + n2) / 3 = [0.2, 0.233333, 0.266667, 0.3]
        // sample layer 1 = [0.5, 0.3, 0.15, 0.05], 2 core experts → {0, 1}, own core mass 0.8
        // ω̂ core mass = 0.2 + 0.233333 = 13/30; scale = 0.8 / (13/30) = 24/13
        // ω̂' = [0.2·24/13, (7/30)·24/13] = [4.8/13, 5.6/13]
        // α = 0.5: ω[0] = 0.25 + 2.4/13 = 0.43461538; ω[1] = 0.15 + 2.8/13 = 0.36538462; others unchanged
        let p = MixingParameters(criticalLayers: [1], coreExperts: 2, alpha: 0.5, kernel: .cosine, bandwidth: 1)
        let o = try KernelRegression.override(sample: sample, neighbors: neighbors([0.5, 0.25, -0.5]), parameters: p)
        XCTAssertEqual(Set(o.layers.keys), [1])
        assertClose(o.layers[1], [0.43461538, 0.36538462, 0.15, 0.05], "re-mixed layer 1")
        XCTAssertEqual(o.layers[1]?.reduce(0, +) ?? 0, 1, accuracy: 1e-6, "total mass stays 1")
    }

    func testAlphaOneReturnsOwnPathway() throws {
        let p = MixingParameters(criticalLayers: [0, 1], coreExperts: 3, alpha: 1, kernel: .gaussian, bandwidth: 0.3)
        let o = try KernelRegression.override(sample: sample, neighbors: neighbors([0.9, 0.7, 0.5]), parameters: p)
        XCTAssertEqual(o.layers[0], sample[0])
        XCTAssertEqual(o.layers[1], sample[1])
    }

    func testAlphaZeroTakesEstimateOnCore() throws {
        // uniform kernel: ω̂ = (n1 + n2 + n3)/3 = [0.25, 0.25, 0.25, 0.25]; core {0,1} mass 0.8 → ω̂' = [0.4, 0.4]
        let p = MixingParameters(criticalLayers: [1], coreExperts: 2, alpha: 0, kernel: .uniform, bandwidth: 1)
        let o = try KernelRegression.override(sample: sample, neighbors: neighbors([0.1, 0.2, 0.3]), parameters: p)
        assertClose(o.layers[1], [0.4, 0.4, 0.15, 0.05], "α = 0")
    }

    func testCoreExpertTiesGoToLowerIndex() {
        XCTAssertEqual(CoreExperts.select([0.2, 0.3, 0.2, 0.3], count: 3), [1, 3, 0])
    }

    func testNoKernelMassKeepsSample() throws {
        let p = MixingParameters(criticalLayers: [1], coreExperts: 2, alpha: 0, kernel: .cosine, bandwidth: 1)
        let o = try KernelRegression.override(sample: sample, neighbors: neighbors([-0.1, -0.2, -0.3]), parameters: p)
        XCTAssertEqual(o.layers[1], sample[1])
        let none = try KernelRegression.override(sample: sample, neighbors: [], parameters: p)
        XCTAssertEqual(none.layers[1], sample[1])
    }

    func testInvalidParametersAndShapes() {
        let bad = MixingParameters(criticalLayers: [2], coreExperts: 2, alpha: 0.5)
        XCTAssertThrowsError(try KernelRegression.override(sample: sample, neighbors: [], parameters: bad)) { e in
            XCTAssertTrue("\(e)".contains("layer 2"), "\(e)")
        }
        let alpha = MixingParameters(criticalLayers: [1], coreExperts: 2, alpha: 1.5)
        XCTAssertThrowsError(try KernelRegression.override(sample: sample, neighbors: [], parameters: alpha))
        let p = MixingParameters(criticalLayers: [1], coreExperts: 2, alpha: 0.5)
        let short = [PathwayNeighbor(similarity: 0.9, pathway: [[1, 0, 0, 0], [1, 0]])]
        XCTAssertThrowsError(try KernelRegression.override(sample: sample, neighbors: short, parameters: p)) { e in
            XCTAssertTrue("\(e)".contains("2 experts"), "\(e)")
        }
    }


    func testPublishedNeighborAverage() throws {
        // sims 0.8, 0.6, 0.2 (Σ = 1.6); third pathway sums to 2 to exercise the renormalisation:
        // Σ s_i ω_i = [0.08,0.16,0.24,0.32] + [0.24,0.18,0.12,0.06] + [0.1,0.1,0.1,0.1] = [0.42,0.44,0.46,0.48]
        // /1.6 then renormalised (sum 1.8/1.6) = [0.42,0.44,0.46,0.48] / 1.8
        let ns = [PathwayNeighbor(similarity: 0.8, pathway: [n1, n1]),
                  PathwayNeighbor(similarity: 0.6, pathway: [n2, n2]),
                  PathwayNeighbor(similarity: 0.2, pathway: [[0.5, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5]])]
        let o = try NeighborAverage.override(neighbors: ns, layers: [0, 1], experts: 4)
        let expected: [Float] = [0.23333333, 0.24444444, 0.25555556, 0.26666667]
        assertClose(o?.layers[0], expected, "published average layer 0")
        assertClose(o?.layers[1], expected, "published average layer 1")
        XCTAssertNil(try NeighborAverage.override(neighbors: [], layers: [1], experts: 4))
    }
}

final class ModeFindingTests: XCTestCase {
    func testOneMeanShiftStep() {
        // start [1, 0]; a = [0.6, 0.4] (d² = 0.32), b = [0.2, 0.8] (d² = 1.28); k = 2
        // h = (√0.32 + √1.28)/2 = (0.565685 + 1.131371)/2 = 0.848528, 2h² = 1.44
        // w_a = e^(−0.32/1.44) = 0.80073740, w_b = e^(−1.28/1.44) = 0.41111229
        // x = (0.6 w_a + 0.2 w_b) / (w_a + w_b) = 0.56266489 / 1.21184969 = 0.46430...
        let refs: [Float] = [0.6, 0.4, 0.2, 0.8]
        let m = ModeFinding.mode(start: [1, 0], references: refs, count: 2, k: 2, maxIterations: 1)
        let wa: Float = 0.80073740, wb: Float = 0.41111229
        XCTAssertEqual(m[0], (0.6 * wa + 0.2 * wb) / (wa + wb), accuracy: 1e-6)
        XCTAssertEqual(m[1], (0.4 * wa + 0.8 * wb) / (wa + wb), accuracy: 1e-6)
    }

    func testConvergesToNearestWithKOneAndHonoursExclusion() {
        let refs: [Float] = [0.8, 0.2, 0.2, 0.8, 0.5, 0.5]
        XCTAssertEqual(ModeFinding.mode(start: [0.9, 0.1], references: refs, count: 3, k: 1), [0.8, 0.2])
        XCTAssertEqual(ModeFinding.mode(start: [0.9, 0.1], references: refs, count: 3, k: 1, excluded: [0]), [0.5, 0.5])
    }

    func testOverrideMixesModeOnCore() throws {
        // 1 layer, 2 experts, k = 1: mode = [0.2, 0.8]; core = both experts (mass 1), α = 0.5
        // → [0.5·0.7 + 0.5·0.2, 0.5·0.3 + 0.5·0.8] = [0.45, 0.55]
        let p = MixingParameters(criticalLayers: [0], coreExperts: 2, alpha: 0.5)
        let o = try ModeFinding.override(sample: [[0.7, 0.3]], references: [0.2, 0.8], count: 1, k: 1, parameters: p)
        XCTAssertEqual(o.layers[0]?[0] ?? -1, 0.45, accuracy: 1e-6)
        XCTAssertEqual(o.layers[0]?[1] ?? -1, 0.55, accuracy: 1e-6)
    }
}
