// Node types for tests/test_node_red_runtime.py: each shows one way a node can fail
// (or take its time) when Node-RED starts or stops it. Loaded through settings.nodesDir.
module.exports = function (RED) {
    // Sets its status in its constructor: a restart is visible on /comms as status/<id>.
    // "credentials" makes Node-RED store {secret} for it (GET /credentials shows has_secret).
    function Probe(n) {
        RED.nodes.createNode(this, n);
        Probe.started = (Probe.started || 0) + 1;
        this.status({ text: "started " + Probe.started });
    }
    RED.nodes.registerType("test-probe", Probe, { credentials: { user: { type: "text" }, secret: { type: "password" } } });

    // Throws in its constructor: Node-RED logs it and leaves the node out of the running flow.
    function Throws(n) {
        RED.nodes.createNode(this, n);
        throw new Error("test-throws: " + (n.reason || "no reason"));
    }
    RED.nodes.registerType("test-throws", Throws);

    // Reports an error (and a red status) in its constructor, as nodes do for a bad configuration.
    function Errors(n) {
        RED.nodes.createNode(this, n);
        this.error("test-errors: " + (n.reason || "no reason"));
        this.status({ fill: "red", shape: "ring", text: "error" });
    }
    RED.nodes.registerType("test-errors", Errors);

    // Takes `ms` milliseconds to close: a deploy that stops it waits that long.
    function SlowClose(n) {
        RED.nodes.createNode(this, n);
        const ms = Number(n.ms || 0);
        this.on("close", (done) => setTimeout(done, ms));
    }
    RED.nodes.registerType("test-slow-close", SlowClose);
};
