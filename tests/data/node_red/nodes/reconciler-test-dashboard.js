// Dashboard-like node types for tests/test_node_red_instance.py (node-red-dashboard is not installed in the
// test instances): the same type names and shapes as node-red-dashboard 3.x, doing nothing.
// ui_base (site name, theme), ui_tab (a page), ui_group (a group on a page) are config nodes; ui_text is a
// widget on a flow tab that uses a group.
module.exports = function (RED) {
    for (const kind of ["ui_base", "ui_tab", "ui_group", "ui_text"]) {
        RED.nodes.registerType(kind, function (n) { RED.nodes.createNode(this, n); });
    }
};
