"""The MQTT side: topic names, rendering to messages, parsing inbound, and the broker link."""
