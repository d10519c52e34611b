// jsdom has no layout: the router's scroll restoration calls scrollTo after navigation.
window.scrollTo = () => {};
