import BerthCluster
import BerthNet
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import CoreMetrics

/// The agent's HTTP endpoints for people and monitoring:
/// `/healthz` (200 while the process runs), `/readyz` (200 when the node
/// holds a block, has written the node file and programmed its peers; 503
/// and the reason otherwise) and `/metrics` (the Prometheus text format of
/// everything swift-metrics recorded, through swift-prometheus).
final class MetricsServer: Sendable {
    let channel: any Channel
    let group: MultiThreadedEventLoopGroup

    /// Listens on `host:port`; the agent answers readiness and refreshes gauges before each scrape.
    init(host: String, port: Int, registry: PrometheusCollectorRegistry, agent: Agent) throws {
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.pipeline.configureHTTPServerPipeline().flatMap {
                    channel.pipeline.addHandler(Handler(registry: registry, agent: agent))
                }
            }
        do {
            channel = try bootstrap.bind(host: host, port: port).wait()
        } catch {
            try? group.syncShutdownGracefully()
            throw error
        }
    }

    var port: Int { channel.localAddress?.port ?? 0 }

    func close() {
        try? channel.close().wait()
        try? group.syncShutdownGracefully()
    }

    final class Handler: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = HTTPServerRequestPart
        typealias OutboundOut = HTTPServerResponsePart
        let registry: PrometheusCollectorRegistry
        let agent: Agent
        var path = ""
        var method = HTTPMethod.GET

        init(registry: PrometheusCollectorRegistry, agent: Agent) {
            self.registry = registry
            self.agent = agent
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            switch unwrapInboundIn(data) {
            case .head(let head):
                path = String(head.uri.split(separator: "?", maxSplits: 1).first ?? "")
                method = head.method
            case .body:
                break
            case .end:
                let path = self.path, method = self.method, agent = self.agent, registry = self.registry
                let loop = context.eventLoop
                let reply = loop.makeFutureWithTask { () -> (HTTPResponseStatus, String, String) in
                    guard method == .GET || method == .HEAD else { return (.methodNotAllowed, "text/plain", "GET only\n") }
                    switch path {
                    case "/healthz":
                        return (.ok, "text/plain", "ok\n")
                    case "/readyz":
                        let (ready, reason) = await agent.readiness()
                        return (ready ? .ok : .serviceUnavailable, "text/plain", reason + "\n")
                    case "/metrics":
                        await agent.refreshPolicyMetrics()
                        var buffer: [UInt8] = []
                        registry.emit(into: &buffer)
                        return (.ok, "text/plain; version=0.0.4; charset=utf-8", String(decoding: buffer, as: UTF8.self))
                    default:
                        return (.notFound, "text/plain", "not found: /healthz, /readyz, /metrics\n")
                    }
                }
                let bound = NIOLoopBound(context, eventLoop: loop)
                reply.whenSuccess { status, type, body in
                    let context = bound.value
                    var headers = HTTPHeaders()
                    headers.add(name: "Content-Type", value: type)
                    headers.add(name: "Content-Length", value: String(body.utf8.count))
                    headers.add(name: "Connection", value: "close")
                    context.write(self.wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: status, headers: headers))), promise: nil)
                    if method != .HEAD {
                        context.write(self.wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
                    }
                    context.writeAndFlush(self.wrapOutboundOut(.end(nil))).whenComplete { _ in context.close(promise: nil) }
                }
            }
        }
    }
}

/// "ADDR:PORT" ("127.0.0.1:9641", "[::1]:9641") as a host and a port; nil when it is not one.
func hostAndPort(_ text: String) -> (host: String, port: Int)? {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (1...65535).contains(port) else { return nil }
    var host = String(text[..<colon])
    if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    guard IPAddress(host) != nil else { return nil }
    return (host, port)
}

/// swift-metrics to swift-prometheus with each metric's help text (the
/// library's own factory writes none, and `promtool check metrics` wants it).
struct DescribedMetricsFactory: MetricsFactory {
    let registry: PrometheusCollectorRegistry
    let help: [String: String]
    let durationBuckets: [Duration] = [.milliseconds(1), .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
                                       .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
                                       .milliseconds(2500), .seconds(5)]

    func descriptor(_ label: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: label, unitName: "", helpText: help[label] ?? label.replacingOccurrences(of: "_", with: " "))
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard aggregate else { return registry.makeGauge(descriptor: descriptor(label), labels: dimensions) }
        return registry.makeValueHistogram(descriptor: descriptor(label), labels: dimensions, buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000])
    }

    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(descriptor: descriptor(label), labels: dimensions)
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        registry.makeDurationHistogram(descriptor: descriptor(label), labels: dimensions, buckets: durationBuckets)
    }

    func destroyCounter(_ handler: any CounterHandler) { if let c = handler as? Prometheus.Counter { registry.unregisterCounter(c) } }
    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) { if let c = handler as? Prometheus.Counter { registry.unregisterCounter(c) } }
    func destroyRecorder(_ handler: any RecorderHandler) {
        if let g = handler as? Prometheus.Gauge { registry.unregisterGauge(g) }
        if let h = handler as? Histogram<Double> { registry.unregisterValueHistogram(h) }
    }
    func destroyMeter(_ handler: any MeterHandler) { if let g = handler as? Prometheus.Gauge { registry.unregisterGauge(g) } }
    func destroyTimer(_ handler: any TimerHandler) { if let h = handler as? Histogram<Duration> { registry.unregisterDurationHistogram(h) } }
}
