"""HTTP surfaces: HTML pages, the JSON API and chat, one blueprint each."""
