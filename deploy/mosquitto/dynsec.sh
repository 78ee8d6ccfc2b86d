#!/bin/sh
# The users and rights of deploy/mosquitto/acl, made with mosquitto's dynamic-security plugin
# (docs/security.md). Run it once, against a broker whose plugin has an admin user.
# mosquitto_ctrl reads how to reach the broker from ~/.config/mosquitto_ctrl, one option per
# line (-h broker, -u admin, -P <admin password>, --cafile ... for TLS), so that no password
# shows in the process list. The new users' passwords come from the environment.
# Written for mqtt.base_topic "bridge" and homeassistant.prefix "homeassistant": replace those
# (every "bridge/" and "homeassistant/" below) if yours differ.
set -eu

ctrl() { mosquitto_ctrl dynsec "$@" >/dev/null; }

# The bridge itself (mqtt.username: bridge).
ctrl createRole bridge
# state, availability, info, events, snapshots, command results, responses, its last will
ctrl addRoleACL bridge publishClientSend 'bridge/#' allow
# commands and bridge requests (shard/<index>/ with shard.count > 1)
ctrl addRoleACL bridge subscribePattern 'bridge/+/command' allow
ctrl addRoleACL bridge subscribePattern 'bridge/bridge/request/+' allow
ctrl addRoleACL bridge subscribePattern 'bridge/bridge/shard/+/request/+' allow
# Home Assistant discovery, and Home Assistant's birth message
ctrl addRoleACL bridge publishClientSend 'homeassistant/device/+/config' allow
ctrl addRoleACL bridge subscribePattern 'homeassistant/status' allow
# replies on MQTT 5 response topics
ctrl addRoleACL bridge publishClientSend 'replies/#' allow
ctrl createClient bridge -p "$BRIDGE_PASSWORD"
ctrl addClientRole bridge bridge

# An automation (a Node-RED flow, a script) that may command the front door and no other
# device, and ask the bridge for health, info and devices.
ctrl createRole automation
ctrl addRoleACL automation publishClientSend 'bridge/front-door/command' allow
ctrl addRoleACL automation subscribePattern 'bridge/front-door/#' allow
ctrl addRoleACL automation publishClientSend 'bridge/bridge/request/+' allow
ctrl addRoleACL automation subscribePattern 'bridge/bridge/#' allow
ctrl addRoleACL automation subscribePattern 'replies/automation/#' allow
ctrl createClient automation -p "$AUTOMATION_PASSWORD"
ctrl addClientRole automation automation

# A dashboard that only watches.
ctrl createRole dashboard
ctrl addRoleACL dashboard subscribePattern 'bridge/#' allow
ctrl createClient dashboard -p "$DASHBOARD_PASSWORD"
ctrl addClientRole dashboard dashboard

# Home Assistant with MQTT discovery: sees everything, commands every device.
ctrl createRole homeassistant
ctrl addRoleACL homeassistant subscribePattern 'bridge/#' allow
ctrl addRoleACL homeassistant publishClientSend 'bridge/+/command' allow
ctrl addRoleACL homeassistant subscribePattern 'homeassistant/#' allow
ctrl addRoleACL homeassistant publishClientSend 'homeassistant/status' allow
ctrl createClient homeassistant -p "$HOMEASSISTANT_PASSWORD"
ctrl addClientRole homeassistant homeassistant
