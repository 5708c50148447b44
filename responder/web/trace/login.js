"use strict";
// Come back to the page that asked for the token.
document.getElementById("next").value = location.pathname + location.search;
