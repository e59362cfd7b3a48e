import Foundation

// Inline SVG for the report: accuracy bars, timing bars, pathway heat-maps and their
// colour scale. Every chart is one <svg> element with a class naming its kind
// (`chart acc`, `chart timing`, `hm`, `scale`); sizes are in CSS pixels, text is styled by
// the page's stylesheet. Heat-maps are drawn compactly (one <path> per colour level, each
// cell a stroke segment, runs of equal cells merged) so that hundreds of them stay small.

enum Text {
    /// Escapes text for HTML content and attribute values.
    static func html(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// `x` with `digits` decimals ("0.312"); fast (no Foundation formatting), for the
    /// many numbers of a large page.
    static func fixed(_ x: Double, _ digits: Int) -> String {
        guard x.isFinite else { return x.isNaN ? "nan" : (x > 0 ? "inf" : "-inf") }
        var scale = 1.0
        for _ in 0..<digits { scale *= 10 }
        let n = Int((abs(x) * scale).rounded())
        let sign = x < 0 && n != 0 ? "-" : ""
        guard digits > 0 else { return sign + String(n) }
        let whole = n / Int(scale), frac = String(n % Int(scale))
        return sign + String(whole) + "." + String(repeating: "0", count: digits - frac.count) + frac
    }

    /// A share as a percentage with one decimal ("96.4").
    static func percent(_ x: Double) -> String { fixed(100 * x, 1) }
}

/// The heat-maps' colour scale: `levels` steps from 0 to a figure's largest weight, linear,
/// interpolated between a few anchors from paper-white to dark blue.
enum ColourScale {
    static let levels = 16
    static let anchors: [(Double, Double, Double)] = [
        (248, 250, 252), (191, 219, 254), (96, 165, 250), (37, 99, 235), (30, 58, 138), (15, 23, 42),
    ]
    static let colours: [String] = (0..<levels).map { i in
        let t = Double(i) / Double(levels - 1) * Double(anchors.count - 1)
        let a = min(Int(t), anchors.count - 2), f = t - Double(a)
        let (r0, g0, b0) = anchors[a], (r1, g1, b1) = anchors[a + 1]
        func hex(_ v: Double) -> String {
            let n = max(0, min(255, Int(v.rounded())))
            return String(n, radix: 16).count == 1 ? "0" + String(n, radix: 16) : String(n, radix: 16)
        }
        return "#" + hex(r0 + (r1 - r0) * f) + hex(g0 + (g1 - g0) * f) + hex(b0 + (b1 - b0) * f)
    }
    /// The colour level of weight `w` on a scale up to `maximum` (0: the background).
    static func level(_ w: Double, maximum: Double) -> Int {
        guard maximum > 0, w > 0 else { return 0 }
        return max(0, min(levels - 1, Int(w / maximum * Double(levels))))
    }
    static let coreMark = "#f43f5e"
}

enum Charts {
    struct Bar {
        var label: String
        var colour: String
        var outlined: Bool
        var value: Double
        var detail: String
        /// Attributes for tests and scripts (`data-series="kernel"` ...).
        var data: [(String, String)]
    }

    /// Vertical bars of accuracies in [0, 1] with their values on top; one chart per task.
    static func accuracy(_ bars: [Bar], title: String) -> String {
        let barW = 26, gap = 6, left = 28, top = 14, plotH = 110, bottom = 6
        let width = left + bars.count * (barW + gap) + 4, height = top + plotH + bottom
        var s = "<svg class=\"chart acc\" width=\"\(width)\" height=\"\(height)\" viewBox=\"0 0 \(width) \(height)\" role=\"img\" aria-label=\"\(Text.html(title))\">"
        for tick in [0, 25, 50, 75, 100] {
            let y = top + plotH - tick * plotH / 100
            s += "<line class=\"grid\" x1=\"\(left)\" x2=\"\(width - 2)\" y1=\"\(y)\" y2=\"\(y)\"/>"
            if tick % 50 == 0 { s += "<text class=\"axis\" x=\"\(left - 3)\" y=\"\(y + 3)\" text-anchor=\"end\">\(tick)</text>" }
        }
        for (i, b) in bars.enumerated() {
            let h = Int((b.value * Double(plotH)).rounded())
            let x = left + gap / 2 + i * (barW + gap)
            let data = b.data.map { " data-\($0.0)=\"\(Text.html($0.1))\"" }.joined()
            let style = b.outlined ? " stroke=\"#374151\" stroke-dasharray=\"3 2\"" : ""
            s += "<rect class=\"bar\" x=\"\(x)\" y=\"\(top + plotH - h)\" width=\"\(barW)\" height=\"\(max(h, 0))\" fill=\"\(b.colour)\"\(style)\(data)>"
            s += "<title>\(Text.html(b.label)): \(Text.html(b.detail))</title></rect>"
            s += "<text class=\"value\" x=\"\(x + barW / 2)\" y=\"\(top + plotH - h - 3)\" text-anchor=\"middle\">\(Text.percent(b.value))</text>"
        }
        return s + "</svg>"
    }

    struct TimingRow {
        var label: String
        var colour: String
        var base: Double
        var c3po: Double
        var overhead: Double
    }

    /// Horizontal bars, one per run: the base pass (grey) and the C3PO answer's extra time.
    static func timing(_ rows: [TimingRow]) -> String {
        let left = 120, barMax = 360, rowH = 24, top = 6
        let width = left + barMax + 300, height = top + rows.count * rowH + 6
        let longest = rows.map(\.c3po).max() ?? 0
        func px(_ t: Double) -> Int { longest > 0 ? Int((t / longest * Double(barMax)).rounded()) : 0 }
        var s = "<svg class=\"chart timing\" width=\"\(width)\" height=\"\(height)\" viewBox=\"0 0 \(width) \(height)\" role=\"img\" aria-label=\"seconds per question\">"
        for (i, r) in rows.enumerated() {
            let y = top + i * rowH
            let b = px(r.base), c = max(px(r.c3po), b)
            s += "<text class=\"label\" x=\"\(left - 6)\" y=\"\(y + 15)\" text-anchor=\"end\">\(Text.html(r.label))</text>"
            s += "<rect class=\"base\" x=\"\(left)\" y=\"\(y + 4)\" width=\"\(b)\" height=\"16\" fill=\"\(ReportAnalysis.baseColour)\" data-run=\"\(Text.html(r.label))\" data-seconds=\"\(r.base)\"><title>base pass: \(Text.fixed(r.base, 4)) s per question</title></rect>"
            s += "<rect class=\"extra\" x=\"\(left + b)\" y=\"\(y + 4)\" width=\"\(c - b)\" height=\"16\" fill=\"\(r.colour)\" data-run=\"\(Text.html(r.label))\" data-seconds=\"\(r.c3po)\"><title>C3PO answer: \(Text.fixed(r.c3po, 4)) s per question</title></rect>"
            s += "<text class=\"value\" x=\"\(left + c + 6)\" y=\"\(y + 15)\">\(Text.fixed(r.c3po, 4)) s (base \(Text.fixed(r.base, 4)) s, overhead \(Text.percent(r.overhead)) %)</text>"
        }
        return s + "</svg>"
    }

    /// The colour scale of one figure: its levels from 0 to `maximum`, and the core mark.
    static func scale(maximum: Double, core: Bool) -> String {
        let step = 10, w = ColourScale.levels * step
        let width = 60 + w + (core ? 130 : 10), height = 22
        var s = "<svg class=\"scale\" width=\"\(width)\" height=\"\(height)\" viewBox=\"0 0 \(width) \(height)\" role=\"img\" aria-label=\"colour scale\">"
        s += "<text class=\"axis\" x=\"26\" y=\"14\" text-anchor=\"end\">0</text>"
        for (i, c) in ColourScale.colours.enumerated() {
            s += "<rect x=\"\(30 + i * step)\" y=\"4\" width=\"\(step)\" height=\"12\" fill=\"\(c)\"/>"
        }
        s += "<text class=\"axis\" x=\"\(34 + w)\" y=\"14\">\(Text.fixed(maximum, 3))</text>"
        if core {
            let x = 70 + w
            s += "<rect x=\"\(x)\" y=\"4\" width=\"10\" height=\"12\" fill=\"\(ColourScale.colours[0])\" stroke=\"#cbd5e1\"/>"
            s += "<line x1=\"\(x + 1)\" x2=\"\(x + 9)\" y1=\"15\" y2=\"15\" stroke=\"\(ColourScale.coreMark)\" stroke-width=\"2\"/>"
            s += "<text class=\"axis\" x=\"\(x + 14)\" y=\"14\">core expert</text>"
        }
        return s + "</svg>"
    }

    /// One heat-map: rows = `layers` (a nil row: not recorded), columns = experts, colour =
    /// weight on the figure's shared scale up to `maximum`; core experts underlined. With
    /// `rowTitles`, hovering a row names its largest weights.
    static func heatmap(_ grid: [[Double]?], layers: [Int], experts: Int, maximum: Double, core: [Set<Int>]?,
                        name: String, rowTitles: Bool) -> String {
        let cw = max(1, min(14, 256 / max(experts, 1))), ch = layers.count <= 8 ? 10 : 6
        let left = 26, w = experts * cw, h = layers.count * ch
        let width = left + w + 2, height = h + 12
        var s = "<svg class=\"hm\" width=\"\(width)\" height=\"\(height)\" viewBox=\"0 0 \(width) \(height)\" role=\"img\" aria-label=\"\(Text.html(name))\">"
        if !rowTitles { s += "<title>\(Text.html(name))</title>" }
        s += "<rect x=\"\(left)\" width=\"\(w)\" height=\"\(h)\" fill=\"\(ColourScale.colours[0])\"/>"
        var paths = Array(repeating: "", count: ColourScale.levels)
        var missing = ""
        for (j, row) in grid.enumerated() {
            let y = j * ch + ch / 2
            guard let row else { missing += "M\(left) \(y)h\(w)"; continue }
            var e = 0
            while e < experts {
                let level = ColourScale.level(row[e], maximum: maximum)
                var end = e + 1
                while end < experts && ColourScale.level(row[end], maximum: maximum) == level { end += 1 }
                if level > 0 { paths[level] += "M\(left + e * cw) \(y)h\((end - e) * cw)" }
                e = end
            }
        }
        for (level, d) in paths.enumerated() where !d.isEmpty {
            s += "<path stroke=\"\(ColourScale.colours[level])\" stroke-width=\"\(ch)\" d=\"\(d)\"/>"
        }
        if !missing.isEmpty { s += "<path class=\"missing\" stroke-width=\"\(ch)\" d=\"\(missing)\"><title>not recorded</title></path>" }
        if let core {
            let inset = cw >= 4 ? 1 : 0
            var d = ""
            for (j, set) in core.enumerated() where j < layers.count {
                for e in set.sorted() where e < experts { d += "M\(left + e * cw + inset) \(j * ch + ch - 1)h\(cw - 2 * inset)" }
            }
            if !d.isEmpty { s += "<path class=\"core\" stroke=\"\(ColourScale.coreMark)\" stroke-width=\"2\" d=\"\(d)\"/>" }
        }
        for (j, l) in layers.enumerated() {
            s += "<text x=\"\(left - 3)\" y=\"\(j * ch + ch / 2 + 3)\" text-anchor=\"end\">\(l)</text>"
        }
        let tick = experts <= 16 ? 4 : experts <= 64 ? 16 : 32
        for e in stride(from: 0, to: experts, by: tick) {
            s += "<text x=\"\(left + e * cw + cw / 2)\" y=\"\(h + 10)\" text-anchor=\"middle\">\(e)</text>"
        }
        if rowTitles {
            for (j, row) in grid.enumerated() {
                guard let row else { continue }
                let top = row.indices.sorted { row[$0] > row[$1] }.prefix(4)
                let text = top.map { "e\($0) \(Text.fixed(row[$0], 3))" }.joined(separator: ", ")
                s += "<rect class=\"row\" x=\"\(left)\" y=\"\(j * ch)\" width=\"\(w)\" height=\"\(ch)\"><title>\(Text.html(name)), layer \(layers[j]): \(text)</title></rect>"
            }
        }
        return s + "</svg>"
    }
}
